"""``raco report RUN_OR_SWEEP_DIR [--output DIR]``: PNG plots and the report twice, as Markdown and
as one self-contained HTML file (``report.{md,html}``), for a sweep (``raco sweep``) or one run
(``raco train``, optionally with ``raco eval`` output).

The target's kind is told by its files: ``results.json`` makes a sweep, ``config.yaml`` with
``summary.json`` a run; anything else is a :class:`ReportError` (exit 2). DIR defaults to
``TARGET/report``; the report is derived data, so existing report files in DIR are replaced.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raco.sweep import plots
from raco.sweep.render import Block, Code, Image, Section, Table, to_html, to_markdown

RESULTS_FILE = "results.json"
FRONT_FILE = "front.json"
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = Path("eval") / "eval.json"
REPORT_DIR = "report"
REPORT_NAME = "report"  # DIR/report.{md,html}
MAX_RUN_PLOTS = 12  # training-curve figures in a sweep report (front points first)

DESCRIPTION = """\
Write PNG plots and a report, as Markdown and as one self-contained HTML file (DIR/report.{md,html}),
for a sweep directory (`raco sweep`: results.json, front.json) or a run directory (`raco train`:
config.yaml, summary.json; with `raco eval` output in RUN/eval/ when present): results table, fronts
and hypervolume, training curves, what each metric means, and the commands that produced the results.
See docs/sweeps.md, "raco report".
"""


class ReportError(ValueError):
    """The target is not a raco run or sweep directory, or its files are unreadable; one paragraph."""


@dataclass
class ReportResult:
    """What was written."""

    kind: str  # "run" or "sweep"
    output: Path
    files: list[Path]  # the Markdown and HTML reports and every PNG


def target_kind(target: Path) -> str:
    """``"sweep"`` or ``"run"`` by the files in ``target``; :class:`ReportError` says what is expected."""
    if not target.is_dir():
        raise ReportError(
            f"{target} is not a directory; give a run directory (`raco train`) or a sweep "
            "directory (`raco sweep`)"
        )
    if (target / RESULTS_FILE).is_file():
        return "sweep"
    if (target / CONFIG_FILE).is_file() and (target / SUMMARY_FILE).is_file():
        return "run"
    if (target / CONFIG_FILE).is_file():
        raise ReportError(
            f"{target} is not a finished run: it has {CONFIG_FILE} but no {SUMMARY_FILE}, which training "
            f"writes when it ends; finish it with `raco train --resume {target}` and report afterwards."
        )
    raise ReportError(
        f"{target} is neither a raco run nor a raco sweep directory: a sweep directory holds "
        f"{RESULTS_FILE} (written by `raco sweep`), a run directory {CONFIG_FILE} and {SUMMARY_FILE} "
        "(written by `raco train`)."
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"cannot read {path}: {err}") from None


def _records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"cannot read {path}: {err}") from None


def _require(data: Any, keys: tuple[str, ...], path: Path) -> None:
    missing = [key for key in keys if not isinstance(data, dict) or key not in data]
    if missing:
        raise ReportError(f"{path} is not a raco {path.name}: it lacks {', '.join(missing)}")


def fmt(value: Any) -> str:
    """A table cell: 4 significant digits for floats, ``—`` for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def weights_text(weights: dict[str, float]) -> str:
    """``friendly=0.6, concise=0.4``."""
    return ", ".join(f"{name}={fmt(w)}" for name, w in weights.items())


def _weights_label(weights: dict[str, float]) -> str:
    return "(" + ", ".join(fmt(w) for w in weights.values()) + ")"


def held_out_accuracies(preference: Any) -> dict[str, float]:
    """``{objective: held-out accuracy}`` of the tuned model from a ``preference`` record (flat, or
    eval.json's ``{tuned: ..., base: ...}``; keys ``[eval/]<objective>/rewards/accuracies``)."""
    if not isinstance(preference, dict):
        return {}
    flat = preference.get("tuned", preference)
    suffix = "/rewards/accuracies"
    return {
        key.removeprefix("eval/").removesuffix(suffix): value
        for key, value in (flat.items() if isinstance(flat, dict) else [])
        if key.endswith(suffix) and isinstance(value, int | float)
    }


def metric_notes(sweep: bool, reference: dict[str, float] | None = None) -> list[Block]:
    """The section that says what each number means."""
    ref = f" Here: {weights_text(reference)}." if reference else ""
    notes: list[Block] = [
        "**Score** — the mean scorer value of the model's answers to the held-out prompts (`raco eval`); "
        "each eval objective says whether higher or lower is better. **Improvement** — tuned − base score "
        "in the objective's direction (positive: better than the starting model); relative improvement "
        "divides it by |base|. **Win rate** — the share of prompts where the tuned answer scores better "
        "than the base answer (ties count half). **Held-out accuracy** — per training objective, the "
        "share of held-out pairs whose preferred response gets the higher implicit reward (0.5 at the "
        "start: every reward is 0 and ties count half).",
        "**Training curves** — `<objective>/loss` per step (dashed markers: held-out loss); "
        "`<a>|<b>/grad_cosine`, the cosine of two objectives' gradients (below 0 they conflict); "
        "`clip_active`, 1 when RACO's clipping changed the CAGrad coefficients; `<objective>/dual`, the "
        "dual solution p (which objectives the worst-case direction leans on). Aggregator keys are absent "
        "on the weighted-sum path (docs/metrics.md).",
    ]
    if sweep:
        notes += [
            "**Front** — a method's points that no other point of the same method beats in every eval "
            "objective at once (non-dominated). **Hypervolume** — the volume of score space that the "
            "front dominates and that dominates the reference point (default: the base model's scores); "
            "higher is better, 0 when no point beats the reference in every objective. It is computed per "
            f"seed; the report shows mean ± standard deviation over seeds.{ref}",
            "**Weight faithfulness** — per eval objective, Spearman's ρ between a training objective's "
            "weight and the improvement across a method's points: near +1 the results follow the "
            "weights, near 0 the weights do not steer that objective (— when undefined, e.g. constant "
            "weights). **Stability** — skipped steps (non-finite gradients), loss spikes, and the share "
            "of steps on which RACO's clipping was active.",
        ]
    return notes


def _training_image(run_dir: Path, name: str, title: str, objectives: list[str], out: Path) -> Block:
    records = _records(run_dir)
    if not records:
        return f"No {METRICS_FILE} in `{run_dir}`: no training curves for {title}."
    size = plots.plot_training(records, objectives, title, out / name)
    return Image(name, f"Training curves of {title}: loss, gradient cosine, clip activity, dual", size)


# ---- sweeps ----


def _points_table(results: dict[str, Any]) -> Table:
    objectives, evals = results.get("objectives", []), results.get("eval_objectives", [])
    header = ["point", "method", "weights", "seed"]
    header += [f"{e} score" for e in evals] + [f"{e} improvement" for e in evals]
    header += [f"{o} held-out acc" for o in objectives] + ["stability", "wall s"]
    rows = []
    for point in results["points"]:
        scores, improvements = point.get("scores") or {}, point.get("improvements") or {}
        accuracy = held_out_accuracies(point.get("preference"))
        stability = point.get("stability") or {}
        rows.append(
            [
                str(point.get("id")),
                str(point.get("method")),
                weights_text(point.get("weights") or {}),
                fmt(point.get("seed")),
            ]
            + [fmt(scores.get(e)) for e in evals]
            + [fmt(improvements.get(e)) for e in evals]
            + [fmt(accuracy.get(o)) for o in objectives]
            + [", ".join(f"{k} {fmt(v)}" for k, v in stability.items()), fmt(point.get("wall_seconds"))]
        )
    return Table(header, rows)


def _methods_table(front: dict[str, Any], evals: list[str]) -> Table:
    header = ["method", "front (point ids)", "hypervolume mean ± std", "per seed"]
    header += [f"faithfulness ρ {e}" for e in evals] + ["stability"]
    rows = []
    for method, entry in (front.get("methods") or {}).items():
        hv = entry.get("hypervolume") or {}
        faith = entry.get("weight_faithfulness") or {}
        rows.append(
            [
                str(method),
                ", ".join(str(i) for i in entry.get("front", [])),
                f"{fmt(hv.get('mean'))} ± {fmt(hv.get('std'))}",
                ", ".join(f"seed {s}: {fmt(v)}" for s, v in (hv.get("per_seed") or {}).items()),
            ]
            + [fmt(faith.get(e)) for e in evals]
            + [", ".join(f"{k} {fmt(v)}" for k, v in (entry.get("stability") or {}).items())]
        )
    return Table(header, rows)


def _chosen_points(points: list[dict[str, Any]], front_ids: set[str]) -> list[dict[str, Any]]:
    ordered = [p for p in points if str(p.get("id")) in front_ids]
    ordered += [p for p in points if str(p.get("id")) not in front_ids]
    return ordered[:MAX_RUN_PLOTS]


def sweep_sections(sweep_dir: Path, out: Path) -> list[Section]:
    """Every section of a sweep report; writes its PNGs into ``out``."""
    results = _read_json(sweep_dir / RESULTS_FILE)
    _require(results, ("points",), sweep_dir / RESULTS_FILE)
    front_path = sweep_dir / FRONT_FILE
    front = _read_json(front_path) if front_path.is_file() else {}
    evals, points = list(results.get("eval_objectives", [])), results["points"]
    directions, base = results.get("directions", {}), results.get("base") or None
    methods = front.get("methods") or {}
    front_ids = {str(i) for entry in methods.values() for i in entry.get("front", [])}
    overview = (
        f"Sweep `{sweep_dir}`: {len(points)} points; methods "
        f"{', '.join(sorted({str(p.get('method')) for p in points}))}; training objectives "
        f"{', '.join(results.get('objectives', []))}; eval objectives "
        + ", ".join(f"{e} ({directions.get(e, '?')} is better)" for e in evals)
        + (f"; base scores {weights_text(base)}." if base else ".")
    )
    fronts = Section("Fronts and hypervolume")
    if not front:
        fronts.blocks.append(f"No {FRONT_FILE} in this sweep: no fronts or hypervolumes yet.")
    if len(evals) >= 2:
        score_points = [
            plots.ScorePoint(
                str(p.get("id")),
                str(p.get("method")),
                _weights_label(p.get("weights") or {}),
                p.get("scores") or {},
                str(p.get("id")) in front_ids,
            )
            for p in points
        ]
        size = plots.plot_front(
            score_points, evals, directions, base, front.get("reference_point"), out / "front.png"
        )
        order = ", ".join(results.get("objectives", []))
        fronts.blocks.append(
            Image("front.png", f"Points in score space, labelled by weights ({order})", size)
        )
    if front.get("reference_point"):
        fronts.blocks.append(f"Reference point of the hypervolume: {weights_text(front['reference_point'])}.")
    if methods:
        hv = {m: entry.get("hypervolume") or {} for m, entry in methods.items()}
        size = plots.plot_hypervolume(hv, out / "hypervolume.png")
        fronts.blocks += [
            Image("hypervolume.png", "Hypervolume per method (mean ± std over seeds)", size),
            _methods_table(front, evals),
        ]
    curves = Section("Training curves")
    chosen = _chosen_points(points, front_ids)
    if len(chosen) < len(points):
        curves.blocks.append(f"{len(chosen)} of {len(points)} points (front points first).")
    for point in chosen:
        pid = str(point.get("id"))
        run_dir = sweep_dir / str(point.get("run_dir", Path("points") / pid))
        title = f"point {pid} ({point.get('method')}, {weights_text(point.get('weights') or {})})"
        curves.blocks.append(
            _training_image(
                run_dir, f"training-{_file_safe(pid)}.png", title, list(results.get("objectives", [])), out
            )
        )
    commands = [str(c) for c in results.get("commands", [])] + [f"raco report {shlex.quote(str(sweep_dir))}"]
    return [
        Section("Overview", [overview]),
        Section("Results", [_points_table(results)]),
        fronts,
        curves,
        Section("What the metrics mean", metric_notes(True, front.get("reference_point"))),
        Section("Commands", ["The commands that produced these results:", Code(commands)]),
    ]


def _file_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


# ---- runs ----


def _eval_command(run_dir: Path, result: dict[str, Any]) -> str:
    parts = ["raco", "eval", str(run_dir), "--output", str(run_dir / EVAL_FILE.parent)]
    for name, entry in (result.get("objectives") or {}).items():
        parts += [f"--objectives.{name}.scorer", str(entry.get("scorer"))]
        parts += [f"--objectives.{name}.direction", str(entry.get("direction"))]
    settings = result.get("settings") or {}
    for section in ("generation", "prompts"):
        for key, value in (settings.get(section) or {}).items():
            if value not in (None, ""):
                parts += [f"--{section}.{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    if "base" not in result.get("models", ["base"]):
        parts.append("--no-base")
    return shlex.join(parts)


def _run_table(summary: dict[str, Any], objectives: list[str], weights: list[Any]) -> Table:
    final = summary.get("final_metrics") or {}
    rows = [
        [
            name,
            fmt(weight),
            fmt(final.get(f"{name}/loss")),
            fmt(final.get(f"eval/{name}/loss")),
            fmt(final.get(f"eval/{name}/rewards/accuracies")),
            fmt(final.get(f"eval/{name}/score")),
        ]
        for name, weight in zip(objectives, weights, strict=False)
    ]
    return Table(["objective", "weight", "final loss", "held-out loss", "held-out acc", "eval score"], rows)


def _eval_blocks(run_dir: Path, result: dict[str, Any], out: Path, method: str) -> list[Block]:
    judged = result.get("objectives") or {}
    rows = [
        [
            name,
            str(e.get("scorer")),
            str(e.get("direction")),
            fmt(e.get("tuned")),
            fmt(e.get("base")),
            fmt(e.get("improvement")),
            fmt(e.get("relative_improvement")),
            fmt(e.get("win_rate")),
        ]
        for name, e in judged.items()
    ]
    blocks: list[Block] = [
        f"From `{run_dir / EVAL_FILE}` ({fmt(result.get('prompts'))} held-out prompts).",
        Table(
            ["objective", "scorer", "direction", "tuned", "base", "improvement", "relative", "win rate"], rows
        ),
    ]
    preference = result.get("preference") or {}
    if preference:
        models = [m for m in ("tuned", "base") if m in preference]
        names = sorted(
            {*held_out_accuracies(preference.get("tuned"))} | {*held_out_accuracies(preference.get("base"))}
        )
        rows = [[n] + [fmt(held_out_accuracies(preference[m]).get(n)) for m in models] for n in names]
        blocks.append(Table(["held-out accuracy", *models], rows))
    if len(judged) >= 2:
        names = list(judged)
        tuned = {n: judged[n].get("tuned") for n in names}
        base = {n: judged[n]["base"] for n in names if judged[n].get("base") is not None}
        point = plots.ScorePoint("tuned", method, "tuned", tuned, True)
        directions = {n: str(judged[n].get("direction", "higher")) for n in names}
        size = plots.plot_front(
            [point],
            names,
            directions,
            base or None,
            None,
            out / "scores.png",
            "The tuned model and its base (star); up and right are better",
        )
        blocks.append(Image("scores.png", "The tuned model against its base (star) in score space", size))
    return blocks


def run_sections(run_dir: Path, out: Path) -> list[Section]:
    """Every section of a run report; writes its PNGs into ``out``."""
    summary = _read_json(run_dir / SUMMARY_FILE)
    _require(summary, ("objectives", "method"), run_dir / SUMMARY_FILE)
    objectives, weights = list(summary["objectives"]), list(summary.get("weights") or [])
    method = str(summary["method"])
    overview = (
        f"Run `{run_dir}`: method {method}, objectives "
        + ", ".join(f"{n} (weight {fmt(w)})" for n, w in zip(objectives, weights, strict=False))
        + f"; {fmt(summary.get('steps'))} steps ({fmt(summary.get('skipped_steps'))} skipped) in "
        f"{fmt(summary.get('wall_seconds'))} s; model {(summary.get('base_model') or {}).get('name', '?')}."
    )
    final = summary.get("final_metrics") or {}
    results: list[Block] = [_run_table(summary, objectives, weights)]
    if "eval/weighted_accuracy" in final:
        results.append(f"Held-out weighted accuracy: {fmt(final['eval/weighted_accuracy'])}.")
    sections = [Section("Overview", [overview]), Section("Results", results)]
    commands = [f"raco train --config {shlex.quote(str(run_dir / CONFIG_FILE))}"]
    if (run_dir / EVAL_FILE).is_file():
        result = _read_json(run_dir / EVAL_FILE)
        sections.append(Section("Evaluation (raco eval)", _eval_blocks(run_dir, result, out, method)))
        commands.append(_eval_command(run_dir, result))
    title = f"run {run_dir.name} ({method})"
    sections.append(
        Section("Training curves", [_training_image(run_dir, "training.png", title, objectives, out)])
    )
    sections.append(Section("What the metrics mean", metric_notes(False)))
    commands.append(f"raco report {shlex.quote(str(run_dir))}")
    note = (
        "Training again writes to the config's `output_dir`; add `--output_dir NEW` to keep this run. The "
        "`raco eval` line is rebuilt from eval.json's settings (add `--overwrite` to redo it in place)."
    )
    sections.append(Section("Commands", [note, Code(commands)]))
    return sections


def _load_config(run_dir: Path) -> None:
    try:
        yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ReportError(f"cannot read {run_dir / CONFIG_FILE}: {' '.join(str(err).split())}") from None


def write_report(target: str | Path, output: str | Path | None = None) -> ReportResult:
    """Write the report of ``target`` (a run or sweep directory) into ``output`` (default
    ``target/report``): the PNGs and ``report.{md,html}``."""
    target = Path(target)
    kind = target_kind(target)
    out = Path(output) if output is not None else target / REPORT_DIR
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"cannot create the report folder {out}: {err}") from None
    if kind == "sweep":
        sections, title = sweep_sections(target, out), f"raco sweep report: {target.resolve().name}"
    else:
        _load_config(target)
        sections, title = run_sections(target, out), f"raco run report: {target.resolve().name}"
    images = [b.file for s in sections for b in s.blocks if isinstance(b, Image)]
    markdown, html_file = out / f"{REPORT_NAME}.md", out / f"{REPORT_NAME}.html"
    markdown.write_text(to_markdown(title, sections))
    html_file.write_text(to_html(title, sections, out))
    files = [markdown, html_file] + [out / name for name in images]
    return ReportResult(kind, out, files)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``raco report``."""
    parser.add_argument(
        "target", metavar="RUN_OR_SWEEP_DIR", help="a `raco train` run or `raco sweep` folder"
    )
    parser.add_argument("--output", "-o", metavar="DIR", help="folder to write (default: TARGET/report)")


def run_report(args: argparse.Namespace) -> int:
    """``raco report``: 0 on success, 2 (one-paragraph message on stderr) when it cannot report."""
    try:
        result = write_report(args.target, args.output)
    except ReportError as err:
        print(f"raco report: error: {err}", file=sys.stderr)
        return 2
    pngs = sum(path.suffix == ".png" for path in result.files)
    print(f"raco report: {result.kind} report in {result.output} ({REPORT_NAME}.{{md,html}}, {pngs} plots)")
    return 0
