"""Pareto quality on a real model (issue 15): RACO against CAGrad, MGDA, AMoPO and the weighted sum.

    .venv/bin/python benchmarks/pareto.py [--output DIR] [--methods raco,cagrad,...] [--seeds 0,1,2]
        [--weights-grid 0.25] [--steps 30] [--max-prompts 36] [--model NAME] [--quick]
    .venv/bin/python benchmarks/pareto.py --print-only DIR

A ``raco sweep`` (docs/sweeps.md) derived from ``configs/demo``: the embedded dataset ``raco-demo``
(src/raco/demo_data/DATASHEET.md), SmolLM2-135M-Instruct + LoRA r = 8 on q/v, the two conflicting
objectives ``relevant`` and ``concise``. Every method is trained at every weight vector of the grid
(``--weights-grid 0.25``: 5 vectors) with every seed, then each tuned model answers the held-out prompts
and is judged by the scorers that labelled the data (MiniLM relevance to the prompt, higher is better;
words, lower is better), next to the base model judged once.

DIR (``--output``, default sweeps/pareto) holds:

    pareto-sweep.yaml     the sweep file written from the options (``raco sweep --config`` runs it too)
    sweep/                the raco sweep folder: points/, base-eval/, results.json, front.json
    report/               ``raco report DIR/sweep``: front.png, hypervolume.png, training curves,
                          report.{md,html}
    pareto.json           this benchmark's invocations and their wall time (updated before each point)
    pareto-summary.txt    the printed summary
    data/                 --quick only: the 16-pair slice of raco-demo it trains on

The sweep runs through raco's own API (``raco.sweep.run.run_sweep``). Re-running the same command
resumes a killed run (finished points are skipped, a half-trained one resumes from its checkpoint);
other options on the same DIR are refused, naming the settings that differ. The wall time printed is
the sweep's (training, evaluation, base evaluation, results), summed over invocations; imports before
and the report after are not in it.

Printed per method, from the sweep's results.json and front.json:

* hypervolume of the method's points against the base model's scores, mean ± sample std over seeds
  (front.json; 0 = no point beat the base in both objectives), per seed and over all seeds;
* hypervolume against the nadir — the worst score of any point or the base in each objective — mean ±
  sample std over seeds: unlike the base-model reference it also credits points that trade one objective
  for the other, so it still compares the fronts when few points beat the base in every objective;
* per weight vector: each objective's score and relative improvement over the base (mean over seeds),
  and the worst case = min over objectives of those relative improvements;
* faithfulness to the weights: Spearman ρ between an objective's weight and its improvement over the
  method's points (front.json; – where undefined: fewer than 3 points, or constant values);
* worst-case improvement per point (min over objectives of improvement / |base|): mean, minimum and
  maximum over the method's points, and how many points improved every objective;
* training stability, over the method's training runs (the points of a weight-agnostic method such as
  mgda share one run per seed, counted once): skipped steps, loss spikes (raco.sweep.front.SPIKE_RULE)
  on the total and on each objective's loss, the share of steps where RACO's clip changed CAGrad's
  coefficients, training seconds per run.

``--print-only DIR`` prints the summary of an existing folder — this benchmark's DIR, or any ``raco
sweep`` folder — and trains nothing. ``--quick``: the tiny random model, raco and weighted_sum, 2
weight vectors, 1 seed, 2 steps, 2 prompts (sampled: the tiny model answers greedily with newlines
only) — a smoke run of the machinery, not evidence. Bad arguments: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_SWEEP = ROOT / "configs" / "demo" / "sweep.yaml"
DEMO_TRAIN = ROOT / "configs" / "demo" / "train.yaml"
METHODS = ("raco", "cagrad", "weighted_sum", "mgda", "amopo")
SEEDS = (0, 1, 2)
WEIGHTS_GRID = 0.25
STEPS = 30  # the demo's max_steps: 30 steps × 4 pairs = 120 of the 204 training pairs
MAX_PROMPTS = 36  # every held-out prompt of raco-demo (one held-out pair per prompt)
DEMO_EVAL_ROWS = 32  # configs/demo/train.yaml's data.max_eval_rows
MODEL = "smollm2-135m-instruct"
QUICK: dict[str, Any] = {
    "methods": ("raco", "weighted_sum"),
    "seeds": (0,),
    "weights": [[0.75, 0.25], [0.25, 0.75]],
    "steps": 2,
    "max_prompts": 2,
    "model": "tiny-random",
    # the tiny run tokenizes every row it is given: a 16-pair slice of raco-demo's train split and 4
    # held-out pairs (their first 2 prompts are answered), written to DIR/data
    "rows": {"train": 16, "eval": 4},
    # lr 0.05 instead of 1e-3: in 2 steps (the second at lr 0 by the cosine schedule) LoRA moves the
    # tiny model enough for its points to differ
    "overrides": {"train.lr": 0.05, "data.max_eval_rows": 4},
    # The tiny random model answers every prompt greedily with newlines only (0 words, the same
    # relevance for every point): the smoke run samples short answers instead, so that its scores differ.
    "generation": {"max_new_tokens": 16, "do_sample": True, "temperature": 1.0},
}
SWEEP_FILE = "pareto-sweep.yaml"
SWEEP_DIR = "sweep"
DATA_DIR = "data"
TIMING_FILE = "pareto.json"
SUMMARY_FILE = "pareto-summary.txt"
REPORT_DIR = "report"
PROG = "pareto.py"


class Refused(Exception):
    """Bad arguments or an unusable folder: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Refused(message)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("at least one seed")
    return seeds


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, got {value}")
    return value


def _step(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number such as 0.25, got {text!r}") from None
    n = round(1 / value) if value > 0 else 0
    if not 0 < value <= 1 or abs(n * value - 1) > 1e-9:
        raise argparse.ArgumentTypeError(f"a step that divides 1 (1, 0.5, 0.25, 0.2, ...), got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="sweeps/pareto", metavar="DIR", help="the sweep folder")
    parser.add_argument("--methods", type=_csv, help=f"default {','.join(METHODS)}")
    parser.add_argument("--seeds", type=_seeds, help="comma-separated, default 0,1,2")
    parser.add_argument("--weights-grid", type=_step, help=f"simplex grid step (default {WEIGHTS_GRID})")
    parser.add_argument("--steps", type=_positive, help=f"training steps per point (default {STEPS})")
    parser.add_argument("--max-prompts", type=_positive, help=f"held-out prompts (default {MAX_PROMPTS})")
    parser.add_argument("--model", help=f"model.name of every point (default {MODEL})")
    parser.add_argument("--quick", action="store_true", help="the tiny smoke run (< 90 s)")
    parser.add_argument(
        "--print-only", metavar="DIR", help="summarise an existing sweep folder, train nothing"
    )
    args = parser.parse_args(argv)
    if args.print_only is not None:
        keys = ("quick", "methods", "seeds", "weights_grid", "steps", "max_prompts", "model")
        extra = [f"--{key.replace('_', '-')}" for key in keys if getattr(args, key) not in (None, False)]
        if extra:
            raise Refused(f"--print-only trains nothing: drop {', '.join(extra)}")
    if args.methods is not None and not args.methods:
        raise Refused("--methods: at least one method")
    return args


def sweep_tree(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The sweep (a ``raco sweep`` file's content) for these arguments, derived from configs/demo."""
    demo = yaml.safe_load(DEMO_SWEEP.read_text())
    quick = args.quick
    methods = args.methods or list(QUICK["methods"] if quick else METHODS)
    seeds = args.seeds or list(QUICK["seeds"] if quick else SEEDS)
    if args.weights_grid is not None:
        weights: dict[str, Any] = {"grid": args.weights_grid}
    else:
        weights = {"vectors": QUICK["weights"]} if quick else {"grid": WEIGHTS_GRID}
    steps = args.steps or (QUICK["steps"] if quick else STEPS)
    prompts = args.max_prompts or (QUICK["max_prompts"] if quick else MAX_PROMPTS)
    model = args.model or (QUICK["model"] if quick else MODEL)
    overrides: dict[str, Any] = {"train.max_steps": steps, "model.name": model}
    if not quick:  # the prompts answered are the distinct prompts of the held-out rows evaluated
        overrides["data.max_eval_rows"] = max(prompts, DEMO_EVAL_ROWS)
    if quick:
        overrides.update(QUICK["overrides"])
        overrides["data.train"] = str(folder / DATA_DIR / "train.jsonl")
        overrides["data.eval"] = str(folder / DATA_DIR / "eval.jsonl")
    evaluation = json.loads(json.dumps(demo["eval"]))
    evaluation.setdefault("prompts", {})["max_prompts"] = prompts
    if quick:
        evaluation.setdefault("generation", {}).update(QUICK["generation"])
    return {
        "train": str(DEMO_TRAIN),
        "overrides": overrides,
        "methods": list(methods),
        "weights": weights,
        "seeds": list(seeds),
        "eval": evaluation,
        "output_dir": str(folder / SWEEP_DIR),
    }


def _quick_data(folder: Path) -> None:
    """The first rows of raco-demo's splits, as a folder with train.jsonl and eval.jsonl (quick only)."""
    from raco import demo_data

    out = folder / DATA_DIR
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in QUICK["rows"].items():
        lines = demo_data.path(split).read_text().splitlines()[:rows]
        text = "\n".join(lines) + "\n"
        target = out / f"{split}.jsonl"
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)


def _read_timing(folder: Path) -> dict[str, Any]:
    path = folder / TIMING_FILE
    if path.is_file():
        try:
            content = json.loads(path.read_text())
            if isinstance(content, dict) and isinstance(content.get("invocations"), list):
                return content
        except (OSError, ValueError):
            pass
    return {"invocations": []}


def _write_timing(folder: Path, timing: dict[str, Any]) -> None:
    path = folder / TIMING_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(timing, indent=2) + "\n")
    tmp.replace(path)


def run(args: argparse.Namespace, argv: Sequence[str]) -> Path:
    """Write DIR/pareto-sweep.yaml and run (or resume) it as DIR/sweep, keeping DIR/pareto.json's wall
    time current (after every point); returns the sweep folder."""
    from raco.config_tree import ConfigError
    from raco.data.errors import DataError
    from raco.sweep.config import load_sweep_config
    from raco.sweep.run import POINTS_DIR, Launcher, run_sweep

    folder = Path(args.output).resolve()
    if folder.is_file():
        raise Refused(f"--output {args.output} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / SWEEP_FILE).is_file():
        raise Refused(f"--output {args.output} is not empty and holds no {SWEEP_FILE}; choose another folder")
    tree = sweep_tree(args, folder)
    sweep_file = folder / SWEEP_FILE
    text = yaml.safe_dump(tree, sort_keys=False)
    if sweep_file.is_file() and sweep_file.read_text() != text:
        saved = yaml.safe_load(sweep_file.read_text()) or {}
        changed = sorted(k for k in set(saved) | set(tree) if saved.get(k) != tree.get(k))
        raise Refused(
            f"{folder} holds another pareto sweep (its {SWEEP_FILE} differs in: {', '.join(changed)}); "
            "choose another --output, or give the same options to resume it"
        )
    try:
        load_sweep_config(None, tree)  # every check of raco sweep, before anything is written
        folder.mkdir(parents=True, exist_ok=True)
        if args.quick:
            _quick_data(folder)
        sweep_file.write_text(text)
        sweep = load_sweep_config(sweep_file)
    except (ConfigError, DataError, OSError) as err:
        raise Refused(str(err)) from None
    sweep.command = f"raco sweep --config {sweep_file}"
    done_before = sum(_point_done(sweep.output_dir / POINTS_DIR / pid) for pid in sweep.trained_ids())
    started = time.perf_counter()
    record = {
        "command": "python benchmarks/pareto.py " + shlex.join(argv),
        "started_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "points_done_before": done_before,
        "seconds": 0.0,
        "finished": False,
    }
    timing = _read_timing(folder)
    timing["invocations"].append(record)
    _write_timing(folder, timing)

    def say(line: str) -> None:  # run_sweep says a line before each point and at the end
        print(line, flush=True)
        record["seconds"] = round(time.perf_counter() - started, 1)
        _write_timing(folder, timing)

    try:
        run_sweep(sweep, Launcher(), say=say)
    except (ConfigError, DataError) as err:
        raise Refused(str(err)) from None
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["finished"] = True
    _write_timing(folder, timing)
    return folder


def _point_done(run_dir: Path) -> bool:
    """As raco sweep decides: trained (summary.json and model/) and evaluated (eval/eval.json)."""
    return all((run_dir / name).exists() for name in ("summary.json", "model", "eval/eval.json"))


# ---------------------------------------------------------------------------------------------------------
# The summary: a pure function of the sweep folder's files.


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else None


def _num(value: float | None, spec: str = ".6g") -> str:
    return "–" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.2f}%"


def relative_improvements(
    point: dict[str, Any], base: dict[str, Any], names: Sequence[str]
) -> dict[str, float | None]:
    """improvement / |base| per eval objective (None where the improvement or a non-zero base is missing)."""
    out: dict[str, float | None] = {}
    for name in names:
        gain = _float(point["improvements"].get(name))
        ref = _float(base.get(name))
        out[name] = gain / abs(ref) if gain is not None and ref is not None and ref != 0 else None
    return out


def _float(value: Any) -> float | None:
    """``value`` as a finite float, or None."""
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _worst(relative: dict[str, float | None]) -> float | None:
    values = [v for v in relative.values() if v is not None]
    return min(values) if values else None


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def _weights_label(weights: dict[str, float]) -> str:
    return "/".join(f"{w:.2f}" for w in weights.values())


def folders(target: str | Path) -> tuple[Path, Path]:
    """(this benchmark's folder, the sweep folder) of ``target``: DIR and DIR/sweep for a folder written
    by this benchmark, the folder itself twice for any other ``raco sweep`` folder."""
    folder = Path(target)
    sweep = folder / SWEEP_DIR if (folder / SWEEP_DIR / "results.json").is_file() else folder
    for name in ("results.json", "front.json"):
        if not (sweep / name).is_file():
            raise Refused(
                f"{folder} holds no {name} (nor {SWEEP_DIR}/{name}): not a finished raco sweep folder; "
                "run the sweep first"
            )
    return folder, sweep


def _size(folder: Path, results: dict[str, Any]) -> list[str]:
    points = results["points"]
    methods = list(dict.fromkeys(p["method"] for p in points))
    weights = list(dict.fromkeys(_weights_label(p["weights"]) for p in points))
    seeds = list(dict.fromkeys(p["seed"] for p in points))
    config: dict[str, Any] = {}
    first = folder / points[0]["run_dir"] / "config.yaml" if points else None
    if first is not None and first.is_file():
        config = yaml.safe_load(first.read_text()) or {}
    train, model, lora, data = (config.get(k) or {} for k in ("train", "model", "lora", "data"))
    steps, batch = train.get("max_steps"), train.get("batch_size")
    pairs = f" = {steps * batch} pairs" if isinstance(steps, int) and isinstance(batch, int) else ""
    tuned = (
        f"LoRA r={lora.get('r')} on {','.join(lora.get('target_modules') or [])}"
        if lora.get("enabled")
        else "full fine-tuning"
    )
    sweep = yaml.safe_load((folder / "sweep.yaml").read_text()) if (folder / "sweep.yaml").is_file() else {}
    evaluation: dict[str, Any] = sweep["eval"] if isinstance(sweep.get("eval"), dict) else {}
    generation = evaluation.get("generation") or {}
    new_tokens = generation.get("max_new_tokens", "?")
    decoding = (
        f"sampled at temperature {generation.get('temperature', 1.0)}"
        if generation.get("do_sample")
        else "greedy"
    )
    prompts = _prompt_count(folder / "base-eval" / "generations.jsonl")
    judged = ", ".join(
        f"{o.get('name')} ({o.get('scorer')}, {o.get('direction', 'higher')} better)"
        for o in evaluation.get("objectives") or []
    )
    return [
        f"size: {len(points)} points = {len(methods)} method(s) × {len(weights)} weight vector(s) × "
        f"{len(seeds)} seed(s) "
        f"(methods {', '.join(methods)}; weights {', '.join(weights)} for {'/'.join(results['objectives'])}; "
        f"seeds {', '.join(str(s) for s in seeds)})",
        f"per point: {model.get('name', '?')} + {tuned}, data {data.get('train', '?')}, {steps} steps × "
        f"batch {batch}{pairs}; held-out preference accuracy on ≤ {data.get('max_eval_rows', 'all')} pairs",
        f"judged: {prompts} held-out prompts × ≤ {new_tokens} new tokens ({decoding}) by {judged}",
    ]


def _prompt_count(path: Path) -> int | str:
    if not path.is_file():
        return "?"
    return sum(
        1
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("model") == "base"
    )


def training_runs(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per training run: a weight-agnostic method's points name the run they were read from
    (``trained_as``) and count once."""
    return list({p.get("trained_as", p["id"]): p for p in points}.values())


def _wall(folder: Path, points: list[dict[str, Any]]) -> list[str]:
    runs = training_runs(points)
    trained = [float(p["wall_seconds"]) for p in runs if isinstance(p.get("wall_seconds"), int | float)]
    per_point = (
        f"training {sum(trained):.0f} s summed over {len(trained)} runs "
        f"(mean {sum(trained) / len(trained):.1f} s)"
        if trained
        else "training time not recorded"
    )
    timing = _read_timing(folder)["invocations"]
    if not timing:
        return [f"wall time: not measured by {PROG} (the sweep was run otherwise); {per_point}"]
    total = sum(float(t.get("seconds") or 0) for t in timing)
    loads = ", ".join(f"{t.get('load_average')}" for t in timing)
    killed = sum(1 for t in timing if not t.get("finished"))
    note = f", {killed} of them interrupted (time up to its last finished point)" if killed else ""
    return [
        f"wall time: {total:.1f} s over {len(timing)} invocation(s) of {PROG}{note}; "
        f"load average at start {loads} on {timing[-1].get('cpus')} CPUs; {per_point}"
    ]


def nadir(
    points: Sequence[dict[str, Any]], base: dict[str, Any], names: Sequence[str], directions: dict[str, str]
) -> dict[str, float]:
    """The worst score of any point or the base model in each objective (the lowest where higher is
    better, the highest where lower is better): a reference point every complete point weakly beats."""
    out = {}
    for name in names:
        values = [float(v) for v in (*(p["scores"].get(name) for p in points), base.get(name)) if _float(v)]
        out[name] = min(values) if directions[name] == "higher" else max(values)
    return out


def nadir_hypervolumes(
    points: Sequence[dict[str, Any]],
    base: dict[str, Any],
    names: Sequence[str],
    directions: dict[str, str],
    methods: dict[str, dict[str, Any]],
) -> list[str]:
    """The ``[hypervolume vs nadir]`` table: each method's hypervolume (``raco.sweep.front.hypervolume``)
    against the common nadir of every point and the base — unlike the base-model reference, it also
    credits points that trade one objective for another, so it compares fronts where few points beat
    the base in every objective. Per seed, mean ± sample std over seeds, and all seeds together."""
    from raco.sweep.front import seed_hypervolumes

    reference = nadir(points, base, names, directions)
    oriented = {n: directions[n] for n in names}
    lines = [
        "[hypervolume vs nadir] of each method's points against the worst score of any point or the base "
        "(" + ", ".join(f"{n} {reference[n]:.4g}" for n in names) + "); mean ± sample std over seeds"
    ]
    rows, means = [], {}
    for method in methods:
        hv = seed_hypervolumes([p for p in points if p["method"] == method], oriented, reference)
        means[method] = hv["mean"]
        rows.append(
            [
                method,
                _num(hv["mean"]),
                "±",
                _num(hv["std"]),
                _num(hv["all_seeds"]),
                " ".join(f"s{s}={_num(v)}" for s, v in hv["per_seed"].items()),
            ]
        )
    lines += _table(["method", "mean", "", "std", "all seeds", "per seed"], rows)
    order = sorted(means, key=lambda m: -(means[m] or 0.0))
    lines.append("by mean: " + " > ".join(f"{m} ({_num(means[m], '.4g')})" for m in order))
    return lines


def summary(target: str | Path) -> str:
    """The printed summary of a finished sweep folder."""
    mine, folder = folders(target)
    try:
        results = json.loads((folder / "results.json").read_text())
        fronts = json.loads((folder / "front.json").read_text())
    except (OSError, ValueError) as err:
        raise Refused(f"cannot read {folder}'s results: {err}") from None
    points: list[dict[str, Any]] = results["points"]
    names: list[str] = results["eval_objectives"]
    directions: dict[str, str] = results["directions"]
    base: dict[str, Any] = results["base"]
    methods: dict[str, dict[str, Any]] = fronts["methods"]
    reference = fronts.get("reference_point") or {}
    by_method = {m: [p for p in points if p["method"] == m] for m in methods}
    relative = {p["id"]: relative_improvements(p, base, names) for p in points}

    out = [f"pareto: raco sweep in {folder}", *_size(folder, results), *_wall(mine, points)]
    out.append(
        "base model: "
        + ", ".join(f"{n} {_num(base.get(n), '.4g')} ({directions[n]} is better)" for n in names)
        + "; hypervolume reference point: "
        + (
            "the base model's scores"
            if reference == base
            else ", ".join(f"{k} {v}" for k, v in reference.items())
        )
    )

    out += [
        "",
        "[hypervolume] of each method's points against the reference point; mean ± sample std over seeds",
    ]
    rows = []
    for method, entry in methods.items():
        hv = entry["hypervolume"]
        per_seed = " ".join(f"s{s}={_num(v)}" for s, v in hv["per_seed"].items())
        rows.append(
            [
                method,
                _num(hv["mean"]),
                "±",
                _num(hv["std"]),
                str(hv["seeds"]),
                _num(hv["all_seeds"]),
                f"{len(entry['front'])}/{len(entry['points'])}",
                per_seed,
            ]
        )
    out += _table(["method", "mean", "", "std", "seeds", "all seeds", "front", "per seed"], rows)
    means = {m: e["hypervolume"]["mean"] for m, e in methods.items()}
    ranked = {m: v for m, v in means.items() if v is not None}
    if ranked:
        best = max(ranked.values())
        leaders = [m for m, v in ranked.items() if v == best]
        if best == 0:
            out.append(
                "every method's mean hypervolume is 0: no point beat the base model in every objective"
            )
        else:
            out.append(f"highest mean hypervolume: {', '.join(leaders)} ({_num(best)})")
        if "raco" in ranked and len(ranked) > 1:
            rank = 1 + sum(v > ranked["raco"] for v in ranked.values())
            ties = sum(v == ranked["raco"] for v in ranked.values()) - 1
            tied = f" (tied with {ties} other(s))" if ties else ""
            out.append(f"raco ranks {rank} of {len(ranked)} by mean hypervolume{tied}")
    out += ["", *nadir_hypervolumes(points, base, names, directions, methods)]
    out += [
        "",
        "[per weight] score and relative improvement over the base (mean over seeds); "
        "worst = min over objectives of those improvements",
    ]
    header = ["method", "weights", "seeds", *names, *(f"Δ{n}" for n in names), "worst"]
    rows = []
    for method, members in by_method.items():
        for label in dict.fromkeys(_weights_label(p["weights"]) for p in members):
            group = [p for p in members if _weights_label(p["weights"]) == label]
            scores = [_mean([p["scores"].get(n) for p in group]) for n in names]
            gains = {n: _mean([relative[p["id"]][n] for p in group]) for n in names}
            rows.append(
                [
                    method,
                    label,
                    str(len(group)),
                    *(_num(s, ".4g") for s in scores),
                    *(_pct(gains[n]) for n in names),
                    _pct(_worst(gains)),
                ]
            )
    out += _table(header, rows)

    out += [
        "",
        "[faithfulness] Spearman ρ between each objective's weight and its improvement, over the method's "
        "points",
    ]
    rows = [
        [m, *(_num(e.get("weight_faithfulness", {}).get(n), "+.3f") for n in names)]
        for m, e in methods.items()
    ]
    out += _table(["method", *(f"ρ {n}" for n in names)], rows)

    out += [
        "",
        "[worst case] per point: min over objectives of improvement / |base|; over the method's points",
    ]
    rows = []
    for method, members in by_method.items():
        worst = [_worst(relative[p["id"]]) for p in members]
        known = [w for w in worst if w is not None]
        rows.append(
            [
                method,
                _pct(_mean(known)),
                _pct(min(known) if known else None),
                _pct(max(known) if known else None),
                f"{sum(w > 0 for w in known)}/{len(members)}",
            ]
        )
    out += _table(["method", "mean", "min", "max", "improved every objective"], rows)

    out += [
        "",
        "[stability] totals over the method's training runs (a weight-agnostic method's points share "
        "one run per seed; loss spikes: raco.sweep.front.SPIKE_RULE)",
    ]
    rows = []
    for method, members in by_method.items():
        runs = training_runs(members)
        stab = [p.get("stability") or {} for p in runs]
        objective_spikes = sum(len(v) for s in stab for v in (s.get("objective_loss_spikes") or {}).values())
        clip = _mean([s.get("clip_fraction") for s in stab])
        walls = _mean([p.get("wall_seconds") for p in runs])
        rows.append(
            [
                method,
                str(sum(int(s.get("steps") or 0) for s in stab)),
                str(sum(int(s.get("skipped_steps") or 0) for s in stab)),
                str(sum(int(s.get("loss_spike_count") or 0) for s in stab)),
                f"{sum(1 for s in stab if s.get('loss_spike_count'))}/{len(runs)}",
                str(objective_spikes),
                "–" if clip is None else f"{clip:.1%}",
                _num(walls, ".1f"),
            ]
        )
    out += _table(
        [
            "method",
            "steps",
            "skipped",
            "loss spikes",
            "runs with spikes",
            "objective spikes",
            "clip",
            "train s/run",
        ],
        rows,
    )
    return "\n".join(out)


def write_report(folder: Path) -> Path:
    """``raco report DIR/sweep --output DIR/report``: front.png, hypervolume.png, report.{md,html}."""
    from raco.sweep.report import ReportError
    from raco.sweep.report import write_report as report

    try:
        return report(folder / SWEEP_DIR, folder / REPORT_DIR).output
    except ReportError as err:
        raise Refused(str(err)) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
        if args.print_only is not None:
            print(summary(args.print_only))
            return 0
        folder = run(args, argv)
        text = summary(folder)
        (folder / SUMMARY_FILE).write_text(text + "\n")
        report = write_report(folder)
        print()
        print(text)
        print(f"\nplots and report (raco report): {report}: front.png, hypervolume.png, report.{{md,html}}")
        print(f"summary: {folder / SUMMARY_FILE}; sweep folder: {folder / SWEEP_DIR}")
    except Refused as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
