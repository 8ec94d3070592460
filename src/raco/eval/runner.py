"""``raco eval``: judge a tuned model (and its starting model) on held-out prompts and pairs.

For each evaluated model — ``tuned`` (TARGET) and, for runs, ``base`` (the starting model):

* preference metrics on the run's held-out pairs (raco.training.evaluate: accuracy with ties counted
  half, mean margin, loss, pairs per objective);
* one response per held-out prompt (raco.eval.generate), scored by every objective's scorer
  (raco.eval.scorers).

Then per objective: the mean score of each model; ``improvement`` = tuned − base in the objective's
direction (positive = better); ``relative_improvement`` = improvement / |base|; ``win_rate`` = share of
prompts where tuned's response scores better than base's, ties counted half. ``worst_case`` is the
smallest relative improvement over the objectives (the objective the tuning served worst).

Files in DIR (written together, atomically): ``generations.jsonl`` (one line per prompt and model:
prompt, response, every score), ``eval.json`` (all of the above, the settings and versions). With the
same settings and seed, a second evaluation writes identical files.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raco.atomic import give_umask_modes
from raco.config_tree import ConfigError
from raco.data.schema import Text, distinct_prompts, prompt_text
from raco.data.sources import get_field, load_records
from raco.eval.config import EvalConfig
from raco.eval.generate import generate
from raco.eval.load import LoadedTarget, load_target
from raco.eval.scorers import ObjectiveScorer, Scores, make_scorer
from raco.metric_keys import eval_key

GENERATIONS_FILE = "generations.jsonl"
EVAL_FILE = "eval.json"


@dataclass(frozen=True)
class Prompts:
    """Prompts to answer (text or chat messages), their text for scorers, and optional references."""

    prompts: list[Text]
    texts: list[str]
    references: list[str] | None


def held_out_prompts(target: LoadedTarget, cfg: EvalConfig) -> Prompts:
    """The prompts of ``prompts.path``, else the run's held-out pairs' distinct prompts, in order."""
    limit = cfg.prompts.max_prompts
    if cfg.prompts.path:
        records = load_records(cfg.prompts.path)
        records.require(
            cfg.prompts.column, *([cfg.prompts.reference_column] if cfg.prompts.reference_column else [])
        )
        rows = list(records.rows)[:limit]
        prompts = [get_field(row, cfg.prompts.column) for row in rows]
        references = (
            [str(get_field(row, cfg.prompts.reference_column)) for row in rows]
            if cfg.prompts.reference_column
            else None
        )
        return Prompts(prompts, [prompt_text(p) for p in prompts], references)
    if target.cfg is None:
        raise ConfigError(
            f"{target.name} is a model, not a run: give the prompts to answer with --prompts.path FILE"
        )
    from raco.training.inputs import load_rows

    _names, _train, held_out, _stats = load_rows(target.cfg)
    prompts = distinct_prompts(held_out, limit)
    return Prompts(prompts, [prompt_text(p) for p in prompts], None)


def preference_metrics(target: LoadedTarget, model: Any, reference: Any, cfg: EvalConfig) -> dict[str, float]:
    """Held-out preference metrics of ``model`` (raco.training.evaluate) on the run's held-out pairs,
    keyed ``<objective>/<metric>`` (no ``eval/`` prefix)."""
    from raco.data.collate import PairCollator
    from raco.training.evaluate import evaluate
    from raco.training.inputs import eval_batches, prepare_data
    from raco.training.session import objective_specs

    run = target.cfg
    assert run is not None
    data = prepare_data(run, target.tokenizer)
    if not data.eval:
        return {}
    device = next(model.parameters()).device
    collator = PairCollator(target.tokenizer.pad_token_id)
    batches = (
        {k: v.to(device) for k, v in b.items()}
        for b in eval_batches(data.eval, collator, cfg.eval_batch_size)
    )
    weights = None if run.method.name == "mgda" else run.weights
    chunk = run.model.logprob_chunk  # as training computed them
    metrics = evaluate(model, batches, objective_specs(run), weights, reference, chunk_tokens=chunk)
    return {key.removeprefix(eval_key("")): value for key, value in metrics.items()}


def win_rate(judge: ObjectiveScorer, tuned: Sequence[float], base: Sequence[float]) -> float:
    """Share of prompts where tuned scores better than base (ties half; unscored prompts left out)."""
    outcomes = [
        judge.compare(t, b) for t, b in zip(tuned, base, strict=True) if not (math.isnan(t) or math.isnan(b))
    ]
    return (
        (sum(o > 0 for o in outcomes) + 0.5 * sum(o == 0 for o in outcomes)) / len(outcomes)
        if outcomes
        else math.nan
    )


def summarise(judged: dict[str, ObjectiveScorer], scores: dict[str, dict[str, Scores]]) -> dict[str, Any]:
    """Per objective: scorer, direction, each model's mean, and (with a base) improvement, relative
    improvement and win rate; plus ``worst_case`` (smallest relative improvement)."""
    out: dict[str, Any] = {}
    for name, judge in judged.items():
        entry: dict[str, Any] = {"scorer": str(judge.scorer), "direction": judge.direction}
        for model, per_objective in scores.items():
            entry[model] = _finite(per_objective[name].mean())
            entry[f"{model}_unscored"] = per_objective[name].n_bad
        if "tuned" in scores and "base" in scores:
            tuned, base = scores["tuned"][name], scores["base"][name]
            gain = judge.improvement(base.mean(), tuned.mean())
            entry["improvement"] = _finite(gain)
            entry["relative_improvement"] = _finite(gain / abs(base.mean())) if base.mean() else None
            entry["win_rate"] = _finite(win_rate(judge, tuned.values, base.values))
        out[name] = entry
    relative = [e.get("relative_improvement") for e in out.values()]
    worst = min((r for r in relative if r is not None), default=None)
    return {"objectives": out, "worst_case_relative_improvement": worst}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def evaluate_target(
    target: str | Path, cfg: EvalConfig, output: str | Path, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Evaluate ``target`` as ``cfg`` says and write DIR=``output``; returns the ``eval.json`` content."""
    output = Path(output)
    _check_output(output, overwrite)
    judged = cfg.judged()
    # full fine-tuning: the starting model is also the reference of the preference metrics
    loaded = load_target(target, device=cfg.device, with_base=cfg.base != "false" or cfg.preference)
    with_base = cfg.base == "true" or (cfg.base == "auto" and loaded.is_run)
    if with_base and not loaded.is_run:
        raise ConfigError(f"base: true needs a run directory (its starting model); {target} is a model")
    models = [m for m, wanted in (("tuned", cfg.tuned), ("base", with_base)) if wanted]
    prompts = held_out_prompts(loaded, cfg) if judged else Prompts([], [], None)
    scorers = {name: make_scorer(judge.scorer, tokenizer=loaded.tokenizer) for name, judge in judged.items()}
    settings = cfg.generation.settings()
    responses: dict[str, list[str]] = {}
    scores: dict[str, dict[str, Scores]] = {}
    preference: dict[str, dict[str, float]] = {}
    for which in models:
        with loaded.as_model(which) as (model, reference):
            if cfg.preference and loaded.is_run:
                preference[which] = preference_metrics(loaded, model, reference, cfg)
            if judged:
                responses[which] = generate(
                    model, loaded.tokenizer, prompts.prompts, settings, progress=progress
                )
        scores[which] = (
            {
                name: scorer.run(prompts.texts, responses[which], prompts.references)
                for name, scorer in scorers.items()
            }
            if judged
            else {}
        )
    result = {
        "target": str(target),
        "models": models,
        "prompts": len(prompts.prompts),
        **(
            summarise(judged, scores)
            if judged
            else {"objectives": {}, "worst_case_relative_improvement": None}
        ),
        "preference": preference,
        "unscored_rows": {
            which: {name: [str(b) for b in s.bad] for name, s in per.items() if s.bad}
            for which, per in scores.items()
        },
        "settings": {"generation": vars(cfg.generation), "prompts": vars(cfg.prompts)},
    }
    _write(output, result, prompts, responses, scores)
    return result


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise ConfigError(
            f"--output {output} exists and is not empty; choose another folder or pass --overwrite"
        )


def _write(
    output: Path,
    result: dict,
    prompts: Prompts,
    responses: dict[str, list[str]],
    scores: dict[str, dict[str, Scores]],
) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.eval-", dir=output.parent))
    try:
        with (tmp / GENERATIONS_FILE).open("w") as handle:
            for i, prompt in enumerate(prompts.prompts):
                for which, texts in responses.items():
                    line = {
                        "index": i,
                        "model": which,
                        "prompt": prompt,
                        "response": texts[i],
                        "scores": {name: _finite(s.values[i]) for name, s in scores[which].items()},
                    }
                    if prompts.references is not None:
                        line["reference"] = prompts.references[i]
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        (tmp / EVAL_FILE).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        give_umask_modes(tmp)
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(result: dict[str, Any]) -> str:
    """The printed summary: one line per objective, then the preference metrics per model."""
    lines = []
    header = f"{'objective':>16}  {'direction':>9}  " + "  ".join(f"{m:>10}" for m in result["models"])
    with_base = "base" in result["models"] and "tuned" in result["models"]
    lines.append(header + ("  improvement  win rate" if with_base else ""))
    for name, entry in result["objectives"].items():
        cells = "  ".join(_cell(entry.get(m), 10) for m in result["models"])
        line = f"{name:>16}  {entry['direction']:>9}  {cells}"
        if with_base:
            line += f"  {_cell(entry.get('improvement'), 11)}  {_cell(entry.get('win_rate'), 8)}"
        lines.append(line)
    if result.get("worst_case_relative_improvement") is not None:
        lines.append(f"worst-case relative improvement: {result['worst_case_relative_improvement']:+.4f}")
    for which, metrics in result.get("preference", {}).items():
        accuracies = {k.split("/")[0]: v for k, v in metrics.items() if k.endswith("/rewards/accuracies")}
        shown = ", ".join(f"{name} {value:.3f}" for name, value in accuracies.items())
        if shown:
            lines.append(f"held-out preference accuracy ({which}): {shown}")
    return "\n".join(lines)


def _cell(value: Any, width: int) -> str:
    return f"{value:>{width}.4g}" if isinstance(value, int | float) else f"{'–':>{width}}"
