"""``raco sweep``: train and evaluate every (method, weights, seed) point, then summarise the fronts.

SWEEP_DIR holds::

    sweep.yaml                 the resolved sweep file (a different sweep is refused in this folder)
    points/<id>.yaml           each point's training config (a normal `raco train` config)
    points/<id>/               each point's run directory, with eval/ (raco eval of the tuned model)
    base-eval/                 raco eval of the starting model, done once
    results.json, results.csv  one row per point: method, weights, seed, scores, improvements,
                               held-out accuracies, stability, wall time, run directory
    front.json                 per method: front, hypervolume (mean and spread over seeds) against the
                               reference point (default: the base model's scores), weight faithfulness

Resumable at any moment: a finished point (its eval/eval.json exists) is skipped, a half-trained point
resumes from its checkpoint (``raco train --resume``), a half-evaluated one is evaluated again. Shared
work is done once: the base model is evaluated once, and with ``share_reference`` (default) every point
reads the reference log-probs from raco's cache (``model.reference: cached``), computed by the first.
Points run one after another, N at a time with ``--parallel N`` (separate processes), or as Slurm jobs
through submitit (``--launcher slurm``).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from raco.atomic import atomic_write
from raco.config_tree import ConfigError
from raco.eval.runner import GENERATIONS_FILE, win_rate
from raco.sweep import front
from raco.sweep.config import SweepConfig, differences, point_id

SWEEP_FILE = "sweep.yaml"
POINTS_DIR = "points"
BASE_EVAL_DIR = "base-eval"
EVAL_DIR = "eval"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
FRONT_JSON = "front.json"


@dataclass
class Launcher:
    """How points run: ``local`` (``parallel`` processes at a time) or ``slurm``/``submitit-local``
    through submitit, with its Slurm parameters (partition, gpus_per_node, timeout_min, ...)."""

    name: str = "local"
    parallel: int = 1
    slurm: dict[str, Any] = field(default_factory=dict)


def point_tree(sweep: SweepConfig, method: str, weights: Sequence[float], seed: int) -> dict[str, Any]:
    """The training config of one point: the base config with the method, the weights, the seed and
    its run directory (and the shared cached reference where the base config leaves it to raco)."""
    tree = copy.deepcopy(sweep.base)
    tree.setdefault("method", {})["name"] = method
    tree.setdefault("train", {})["seed"] = seed
    listed = {o.get("name"): o for o in tree.get("objectives") or [] if isinstance(o, dict)}
    tree["objectives"] = [
        {**listed.get(name, {}), "name": name, "weight": float(w)}
        for name, w in zip(sweep.objectives, weights, strict=True)
    ]
    model = tree.setdefault("model", {})
    if sweep.share_reference and model.get("reference", "auto") == "auto":
        model["reference"] = "cached"
    tree["output_dir"] = str(sweep.output_dir / POINTS_DIR / point_id(method, tuple(weights), seed))
    tree["overwrite"] = False
    return tree


def _finished(run_dir: Path) -> bool:
    return (run_dir / "summary.json").is_file() and (run_dir / "model").is_dir()


def _point_done(run_dir: Path) -> bool:
    return _finished(run_dir) and (run_dir / EVAL_DIR / "eval.json").is_file()


def launch_command(
    sweep_dir: str | Path, pid: str, processes: int, accelerate_config: str | None = None
) -> list[str]:
    """The command training point ``pid`` on ``processes`` processes: ``accelerate launch`` of
    ``raco train`` with the point's config, or ``--resume`` of its run directory when it exists."""
    point = Path(sweep_dir) / POINTS_DIR
    run_dir = point / pid
    raco = (
        ["--resume", str(run_dir)]
        if (run_dir / "config.yaml").is_file()
        else ["--config", str(point / f"{pid}.yaml")]
    )
    config = ["--config_file", accelerate_config] if accelerate_config else []
    launch = [sys.executable, "-m", "accelerate.commands.launch", *config, "--num_processes", str(processes)]
    return [*launch, "-m", "raco", "train", *raco]


def run_point(
    sweep_dir: str,
    pid: str,
    eval_tree: dict[str, Any],
    processes: int = 1,
    accelerate_config: str | None = None,
) -> str:
    """Train (or resume, or skip) and evaluate one point; returns its id. Top-level and picklable, for
    process pools and submitit. With ``processes`` > 1 training runs under ``accelerate launch``."""
    from raco.eval.config import eval_config_from_tree
    from raco.eval.runner import evaluate_target
    from raco.training.loop import resume, train

    run_dir = Path(sweep_dir) / POINTS_DIR / pid
    tree = yaml.safe_load((Path(sweep_dir) / POINTS_DIR / f"{pid}.yaml").read_text())
    if not _finished(run_dir):
        if processes > 1:
            done = subprocess.run(launch_command(sweep_dir, pid, processes, accelerate_config), check=False)
            if done.returncode != 0:
                raise ConfigError(f"point {pid}: `accelerate launch` of raco train exited {done.returncode}")
        elif (run_dir / "config.yaml").is_file():
            resume(run_dir)
        else:
            train(tree)
    out = run_dir / EVAL_DIR
    if not (out / "eval.json").is_file():
        cfg = eval_config_from_tree(eval_tree, {"base": "false"})
        evaluate_target(run_dir, cfg, out, overwrite=True, progress=True)
    return pid


def _evaluate_base(sweep_dir: Path, first_run: Path, eval_tree: dict[str, Any]) -> dict[str, Any]:
    """raco eval of the starting model (of the first point: all points share it), done once."""
    from raco.eval.config import eval_config_from_tree
    from raco.eval.runner import EVAL_FILE, evaluate_target

    out = sweep_dir / BASE_EVAL_DIR
    if not (out / EVAL_FILE).is_file():
        cfg = eval_config_from_tree(eval_tree, {"tuned": "false", "base": "true"})
        evaluate_target(first_run, cfg, out, overwrite=True, progress=False)
    return json.loads((out / EVAL_FILE).read_text())


def _prepare_dir(sweep: SweepConfig) -> Path:
    """Create SWEEP_DIR with sweep.yaml, or check that it holds this very sweep."""
    folder = sweep.output_dir
    saved_file = folder / SWEEP_FILE
    resolved = json.loads(json.dumps(sweep.source))
    if saved_file.is_file():
        saved = yaml.safe_load(saved_file.read_text()) or {}
        changed = differences(saved, resolved)
        if changed:
            raise ConfigError(
                f"{folder} holds another sweep (its {SWEEP_FILE} differs in: {', '.join(changed)}); "
                "choose another output_dir, or restore those settings to resume it"
            )
    elif folder.exists() and any(folder.iterdir()):
        raise ConfigError(
            f"{folder} exists, is not empty and holds no {SWEEP_FILE}; choose another output_dir"
        )
    (folder / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(resolved, sort_keys=True)
    if not saved_file.is_file():
        atomic_write(saved_file, lambda tmp: tmp.write_text(text))
    return folder


def _write_point_configs(sweep: SweepConfig) -> list[str]:
    """points/<id>.yaml of every run the sweep trains (:meth:`SweepConfig.trained_ids`); their ids."""
    ids = []
    for method in sweep.methods:
        for weights in sweep.weights:
            for seed in sweep.seeds:
                pid = point_id(method, weights, seed)
                if sweep.trained_as(method, weights, seed) != pid:
                    continue
                text = yaml.safe_dump(point_tree(sweep, method, weights, seed), sort_keys=False)
                path = sweep.output_dir / POINTS_DIR / f"{pid}.yaml"
                if not path.is_file() or path.read_text() != text:
                    _write_text(path, text)
                ids.append(pid)
    return ids


def _say_shared_runs(sweep: SweepConfig, say: Callable[[str], None]) -> None:
    """One line per weight-agnostic method whose points share runs."""
    if len(sweep.weights) < 2:
        return
    for method in sweep.methods:
        if sweep.trained_as(method, sweep.weights[1], sweep.seeds[0]) != point_id(
            method, sweep.weights[1], sweep.seeds[0]
        ):
            say(
                f"{method} ignores the objective weights: one run per seed ({len(sweep.seeds)}) stands "
                f"for its {len(sweep.weights) * len(sweep.seeds)} points (trained at weights "
                f"{'/'.join(f'{w:g}' for w in sweep.weights[0])})"
            )


def _launch(sweep: SweepConfig, ids: list[str], launcher: Launcher, say: Callable[[str], None]) -> None:
    pending = [pid for pid in ids if not _point_done(sweep.output_dir / POINTS_DIR / pid)]
    if len(pending) < len(ids):
        say(f"{len(ids) - len(pending)} of {len(ids)} runs already done")
    folder = str(sweep.output_dir)
    if launcher.name in ("slurm", "submitit-local"):
        import submitit

        if launcher.name == "slurm":
            executor = submitit.AutoExecutor(folder=str(sweep.output_dir / "submitit"), cluster="slurm")
            executor.update_parameters(**{f"slurm_{k}": v for k, v in launcher.slurm.items()})
        else:
            executor = submitit.LocalExecutor(folder=str(sweep.output_dir / "submitit"))
        extra = (sweep.processes, sweep.accelerate_config)
        jobs = [executor.submit(run_point, folder, pid, sweep.eval_tree, *extra) for pid in pending]
        for job in jobs:
            say(f"point {job.result()} done")
    elif launcher.parallel > 1 and len(pending) > 1:
        with ProcessPoolExecutor(launcher.parallel, mp_context=get_context("spawn")) as pool:
            n = len(pending)
            args = (
                [folder] * n,
                pending,
                [sweep.eval_tree] * n,
                [sweep.processes] * n,
                [sweep.accelerate_config] * n,
            )
            for pid in pool.map(run_point, *args):
                say(f"point {pid} done")
    else:
        for pid in pending:
            say(f"point {pid}: training and evaluating")
            run_point(folder, pid, sweep.eval_tree, sweep.processes, sweep.accelerate_config)


def run_sweep(
    sweep: SweepConfig, launcher: Launcher | None = None, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or resume) the sweep and write its results; returns the content of results.json."""
    launcher = launcher or Launcher()
    if launcher.name not in ("local", "slurm", "submitit-local"):
        raise ConfigError(f"--launcher: {launcher.name!r} is not local or slurm")
    started = time.time()
    _prepare_dir(sweep)
    ids = _write_point_configs(sweep)
    _say_shared_runs(sweep, say)
    _launch(sweep, ids, launcher, say)
    base = _evaluate_base(sweep.output_dir, sweep.output_dir / POINTS_DIR / ids[0], sweep.eval_tree)
    results = collect(sweep, base)
    write_results(sweep, results)
    say(summary_table(results))
    points = len(results["points"])
    trained = "" if len(ids) == points else f" from {len(ids)} runs"
    say(
        f"raco sweep: {points} points{trained} in {sweep.output_dir} "
        f"({time.time() - started:.0f} s this time)"
    )
    return results


def _prompt_scores(path: Path, model: str) -> dict[str, list[float]]:
    """Objective -> per-prompt scores (NaN where unscored) of ``model``'s lines in a generations.jsonl."""
    scores: dict[str, list[float]] = {}
    for line in _read_records(path):
        if line.get("model") == model:
            for name, value in line["scores"].items():
                scores.setdefault(name, []).append(math.nan if value is None else float(value))
    return scores


def summary_table(results: dict[str, Any]) -> str:
    """Per eval objective: the base model's score, then each point's score with its improvement and
    win rate over the base; last, each point's worst-case relative improvement."""
    points = results["points"]
    width = max([12, *(len(p["id"]) for p in points)])
    lines = [f"{'objective':>12}  {'base':>9}  " + "  ".join(f"{p['id']:>{width}}" for p in points)]
    for name in results["eval_objectives"]:
        cells = []
        for p in points:
            score, gain, wins = p["scores"].get(name), p["improvements"].get(name), p["win_rates"].get(name)
            text = "–" if score is None else f"{score:.3g}"
            if score is not None and gain is not None and wins is not None:
                text += f" ({gain:+.3g}, {wins:.0%})"
            cells.append(f"{text:>{width}}")
        base = results["base"].get(name)
        lines.append(f"{name:>12}  {'–' if base is None else f'{base:.3g}':>9}  " + "  ".join(cells))
    worst = [p["worst_case_relative_improvement"] for p in points]
    lines.append(
        f"{'worst case':>12}  {'':>9}  "
        + "  ".join(f"{'–' if w is None else f'{w:+.1%}':>{width}}" for w in worst)
    )
    lines.append("cells: score (improvement over the base in its direction, win rate over the base)")
    return "\n".join(lines)


def _read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect(sweep: SweepConfig, base_eval: dict[str, Any]) -> dict[str, Any]:
    """results.json: every point's scores against the base model's. A point whose run stands for others
    too (:meth:`SweepConfig.trained_as`: a weight-agnostic method) is read from that run, and says so in
    ``trained_as``; its stability is that run's (the total loss spikes of its first weight vector)."""
    judged = sweep.eval.judged()
    directions = {name: j.direction for name, j in judged.items()}
    base = {name: base_eval["objectives"][name].get("base") for name in judged}
    base_scores = _prompt_scores(sweep.output_dir / BASE_EVAL_DIR / GENERATIONS_FILE, "base")
    points = []
    for method in sweep.methods:
        for weights in sweep.weights:
            for seed in sweep.seeds:
                pid = point_id(method, weights, seed)
                source = sweep.trained_as(method, weights, seed)
                run_dir = sweep.output_dir / POINTS_DIR / source
                evaluated = json.loads((run_dir / EVAL_DIR / "eval.json").read_text())
                summary = json.loads((run_dir / "summary.json").read_text())
                scores = {name: evaluated["objectives"][name].get("tuned") for name in judged}
                mine = _prompt_scores(run_dir / EVAL_DIR / GENERATIONS_FILE, "tuned")
                wins = {
                    name: _finite(win_rate(judge, mine[name], base_scores[name]))
                    if name in mine and name in base_scores and len(mine[name]) == len(base_scores[name])
                    else None
                    for name, judge in judged.items()
                }
                improvements = {
                    name: None
                    if scores[name] is None or base[name] is None
                    else judged[name].improvement(base[name], scores[name])
                    for name in judged
                }
                final = summary.get("final_metrics", {})
                held_out = [k for k in final if k.startswith("eval/") and k.endswith("/rewards/accuracies")]
                accuracies = {k: final[k] for k in held_out}
                points.append(
                    {
                        "id": pid,
                        "method": method,
                        "weights": dict(zip(sweep.objectives, weights, strict=True)),
                        "seed": seed,
                        "scores": scores,
                        "improvements": improvements,
                        "win_rates": wins,
                        "worst_case_relative_improvement": front.worst_case_improvement(
                            {"improvements": improvements}, base
                        ),
                        "preference": accuracies,
                        "stability": front.stability(_read_records(run_dir / "metrics.jsonl")),
                        "wall_seconds": summary.get("wall_seconds"),
                        "run_dir": str(Path(POINTS_DIR) / source),
                        **({"trained_as": source} if source != pid else {}),
                    }
                )
    return {
        "objectives": list(sweep.objectives),
        "eval_objectives": list(judged),
        "directions": directions,
        "base": base,
        "points": points,
        "commands": [sweep.command or f"raco sweep --config {sweep.output_dir / SWEEP_FILE}"],
    }


def write_results(sweep: SweepConfig, results: dict[str, Any]) -> None:
    """results.json, results.csv and front.json, atomically."""
    folder = sweep.output_dir
    reference = sweep.reference_point or results["base"]
    weight_objectives = {name: sweep.weight_objectives.get(name, name) for name in results["eval_objectives"]}
    fronts = front.method_fronts(results["points"], results["directions"], reference)
    faithfulness = front.weight_faithfulness(results["points"], weight_objectives)
    for method, entry in fronts.items():
        entry["weight_faithfulness"] = faithfulness.get(method, {})
        entry["stability"] = _mean_stability([p for p in results["points"] if p["method"] == method])
    front_json = {"reference_point": reference, "methods": fronts}
    _write_json(folder / RESULTS_JSON, results)
    _write_json(folder / FRONT_JSON, front_json)
    rows = [_csv_row(p) for p in results["points"]]
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(folder / RESULTS_CSV, write_csv)


def _mean_stability(points: list[dict[str, Any]]) -> dict[str, float | None]:
    keys = sorted({k for p in points for k in p["stability"]})
    out: dict[str, float | None] = {}
    for key in keys:
        values = [p["stability"][key] for p in points if isinstance(p["stability"].get(key), int | float)]
        out[key] = sum(values) / len(values) if values else None
    return out


def _csv_row(point: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": point["id"], "method": point["method"], "seed": point["seed"]}
    for group in ("weights", "scores", "improvements", "preference", "stability"):
        for key, value in point[group].items():
            row[f"{group}.{key}"] = value
    row["wall_seconds"] = point["wall_seconds"]
    row["run_dir"] = point["run_dir"]
    return row


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN/inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _write_json(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(_finite(content), indent=2, ensure_ascii=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
