"""What the user sees while training: a JSONL metrics file, accelerate trackers, a progress bar.

``metrics.jsonl`` holds one JSON object per logged step (``{"step": s, ...}``) and one per evaluation.
Only the main process writes, so every value it is given must already be that of the global batch
(the loop all-reduces the step's statistics; evaluation covers every row on every process).
On resume, lines after the checkpoint's step are dropped first, so the file of a resumed run equals
the file of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from raco.atomic import atomic_write

METRICS_FILE = "metrics.jsonl"


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only the lines of ``path`` whose step is ≤ ``last_step`` (atomically)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill
            continue
        if record.get("step", 0) <= last_step:
            kept.append(line)
    text = "".join(line + "\n" for line in kept)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


class MetricsLog:
    """Writes metrics (main process only) to JSONL, to accelerate's trackers, and to the progress bar."""

    def __init__(
        self,
        run_dir: Path,
        accelerator,
        total_steps: int,
        start_step: int,
        show_bar: bool,
        objectives: tuple[str, ...],
    ) -> None:
        self.accelerator = accelerator
        self.main = accelerator.is_main_process
        self.objectives = objectives
        self.path = Path(run_dir) / METRICS_FILE
        self.handle = open(self.path, "a") if self.main else None  # noqa: SIM115 (closed in close())
        self.bar = tqdm(
            total=total_steps,
            initial=start_step,
            disable=not (self.main and show_bar),
            desc="raco train",
            dynamic_ncols=True,
        )
        self.trackers = bool(accelerator.log_with)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` of ``step`` in the file and the trackers."""
        if not self.main:
            return
        record = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        if self.trackers:
            self.accelerator.log({k: v for k, v in metrics.items() if isinstance(v, int | float)}, step=step)

    def advance(self, step: int, metrics: dict[str, float]) -> None:
        """Move the progress bar to ``step`` showing the main per-objective numbers."""
        shown = {}
        for name in self.objectives:
            if f"loss/{name}" in metrics:
                shown[f"{name}"] = f"{metrics[f'loss/{name}']:.3f}"
        for key in ("eval/weighted_accuracy", "pareto_measure", "lr"):
            if key in metrics:
                shown[key.split("/")[-1]] = f"{metrics[key]:.3g}"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        """Close the bar, the file and the trackers."""
        self.bar.close()
        if self.handle is not None:
            self.handle.close()
        if self.trackers and self.main:
            self.accelerator.end_training()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary_table(final: dict[str, float], objectives: tuple[str, ...]) -> str:
    """A short, aligned end-of-run summary."""
    lines = []
    for name in objectives:
        parts = [f"{name:>16}"]
        for key, label in (
            ("loss/{}", "loss"),
            ("eval/{}/loss", "eval loss"),
            ("eval/{}/rewards/accuracies", "eval acc"),
        ):
            value = final.get(key.format(name))
            if value is not None:
                parts.append(f"{label} {value:.4f}")
        lines.append("  ".join(parts))
    for key in ("eval/weighted_accuracy", "pareto_measure"):
        if key in final:
            lines.append(f"{key:>16}  {final[key]:.4f}")
    return "\n".join(lines)
