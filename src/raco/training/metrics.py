"""What the user sees while training: a JSONL metrics file, accelerate trackers, a progress bar, and
which warnings reach the console (the rest go to ``warnings.log``).

``metrics.jsonl`` holds one JSON object per logged step (``{"step": s, ...}``) and one per evaluation.
Only the main process writes, so every value it is given must already be that of the global batch
(the loop all-reduces the step's statistics; evaluation covers every row on every process).
A checkpoint records how many records had been written; on resume the file is cut back to them (to
none when the run starts over), so the file of a resumed run equals the file of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from raco.atomic import atomic_write
from raco.metric_keys import eval_key, objective_key, pair_key

METRICS_FILE = "metrics.jsonl"
WARNINGS_FILE = "warnings.log"


def _records(path: Path) -> list[str]:
    """The complete records of ``path`` in order (a line torn by a kill, always the last, is not one)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        kept.append(line)
    return kept


def truncate_metrics(path: Path, last_step: int, records: int | None = None) -> None:
    """Cut ``path`` back (atomically) to its first ``records`` records, as a checkpoint recorded them;
    without a count (checkpoints of older versions), to the records whose step is ≤ ``last_step``."""
    if not path.exists():
        return
    lines = _records(path)
    if records is not None:
        kept = lines[:records]
    else:
        kept = [line for line in lines if json.loads(line).get("step", 0) <= last_step]
    text = "".join(line + "\n" for line in kept)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def report_metrics(report: Any, names: Sequence[str]) -> dict[str, float]:
    """The logged scalars of a :class:`raco.gradients.StepReport` for objectives ``names``: per objective
    coef, grad_norm, dual; per pair grad_cosine; pareto_measure and clip_active (the losses are the
    loop's, from the step's all-reduced totals)."""
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        out[objective_key(name, "coef")] = float(report.coefficients[i])
        if report.grad_norms is not None:
            out[objective_key(name, "grad_norm")] = float(report.grad_norms[i])
        if report.dual is not None:
            out[objective_key(name, "dual")] = float(report.dual[i])
    if report.pareto_measure is not None:
        out["pareto_measure"] = report.pareto_measure
    if report.cosines is not None:
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                out[pair_key(names[i], names[j], "grad_cosine")] = float(report.cosines[i, j])
    out["clip_active"] = float(report.clip_active)
    return out


def json_safe(value: Any) -> Any:
    """``value``, or its string for a NaN/inf float (JSON has no NaN/inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
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
        self.records = len(_records(self.path)) if self.main else 0  # written so far (checkpointed)
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
        if self.handle is None:  # not the main process
            return
        record = {"step": step, **{k: json_safe(v) for k, v in metrics.items()}}
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        self.records += 1
        if self.trackers:
            self.accelerator.log({k: v for k, v in metrics.items() if isinstance(v, int | float)}, step=step)

    def advance(self, step: int, metrics: dict[str, float]) -> None:
        """Move the progress bar to ``step`` showing the main per-objective numbers."""
        shown = {}
        for name in self.objectives:
            if objective_key(name, "loss") in metrics:
                shown[f"{name}"] = f"{metrics[objective_key(name, 'loss')]:.3f}"
        shown_keys = (eval_key("weighted_accuracy"), eval_key("mean_accuracy"), "pareto_measure")
        for key, label in (*((k, k.split("/")[-1]) for k in shown_keys), ("learning_rate", "lr")):
            if key in metrics:
                shown[label] = f"{metrics[key]:.3g}"
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
            (objective_key(name, "loss"), "loss"),
            (eval_key(objective_key(name, "loss")), "eval loss"),
            (eval_key(objective_key(name, "rewards/accuracies")), "eval acc"),
        ):
            value = final.get(key)
            if value is not None:
                parts.append(f"{label} {value:.4f}")
        lines.append("  ".join(parts))
    for key in (eval_key("weighted_accuracy"), eval_key("mean_accuracy"), "pareto_measure"):
        if key in final:
            lines.append(f"{key:>16}  {final[key]:.4f}")
    return "\n".join(lines)


# Warnings shown on the console during a run: raco's own notices that ask the user to act (each names
# what to change). Everything else — numerical diagnostics such as a dual certified only to a looser
# gap, library deprecations, torch/transformers notices — is written once to RUN_DIR/warnings.log.
CONSOLE_WARNINGS = (
    "the fused one-backward path does not support this model",  # engine: method.path: plain is faster
    "holds no random state for process",  # resumed from an old checkpoint: dropout will differ
)
_LOGGERS = ("raco",)  # raco's notices on purpose (config notes, skipped data rows): console and file


def shown_on_console(message: Warning | str) -> bool:
    """Whether a warning of a run reaches the console (besides warnings.log)."""
    text = str(message)
    return any(pattern in text for pattern in CONSOLE_WARNINGS)


def _main_by_environment() -> bool:
    """Rank 0 (or no launcher): known before the accelerator exists."""
    return int(os.environ.get("RANK", "0")) == 0


class WarningLog:
    """Python warnings (and the ``raco`` loggers' records) of a run: each distinct one written once to
    ``RUN_DIR/warnings.log`` on the main process, with the step it first appeared at and, at the end,
    how often it recurred; only :func:`shown_on_console` warnings and raco's logged notices are also
    printed, on the main process only. Records that arrive before the run directory exists (setup)
    are kept until :meth:`attach`."""

    def __init__(self, console) -> None:
        self.console = console  # the showwarning in effect before the run
        self.print_logged = not logging.getLogger().handlers  # else the application's handlers print
        self.main = _main_by_environment()
        self.when = "setup"  # the part of the run a new record is attributed to ("step 3", ...)
        self.counts: dict[tuple[str, str], int] = {}
        self.first: dict[tuple[str, str], str] = {}  # the first message of each key
        self.pending: list[str] = []
        self.handle: TextIO | None = None
        self.path: Path | None = None
        self.hidden = 0

    def attach(self, run_dir: Path, main: bool) -> None:
        """Start writing to ``run_dir/warnings.log`` (main process; created even when empty)."""
        self.main = main
        if not main or self.handle is not None:
            return
        self.path = Path(run_dir) / WARNINGS_FILE
        self.handle = open(self.path, "a")  # noqa: SIM115 (closed in close())
        for text in self.pending:
            self.handle.write(text)
        self.pending.clear()
        self.handle.flush()

    def _record(self, kind: str, text: str, where: str = "") -> bool:
        """Write a new record; False (counted only) when it was seen before: the same category from
        the same place in the code (its numbers may differ), or the same logged message."""
        key = (kind, where or text)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] > 1:
            return False
        self.first[key] = text
        line = f"[{self.when}] {kind}: {text}{f' ({where})' if where else ''}\n"
        if self.handle is not None:
            self.handle.write(line)
            self.handle.flush()
        elif self.path is None:
            self.pending.append(line)
        return True

    def showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        new = self._record(category.__name__, " ".join(str(message).split()), f"{filename}:{lineno}")
        if not (new and self.main):
            return
        if shown_on_console(message):
            self.console(message, category, filename, lineno, file, line)
        else:
            self.hidden += 1

    def log_record(self, record: logging.LogRecord) -> None:
        new = self._record(f"{record.name} {record.levelname.lower()}", record.getMessage())
        if new and self.main and self.print_logged:
            print(record.getMessage(), file=sys.stderr)

    def close(self) -> None:
        repeated = [(key, n) for key, n in self.counts.items() if n > 1]
        if self.handle is not None:
            for key, n in repeated:
                where = f" ({key[1]})" if key[1] != self.first[key] else ""
                self.handle.write(f"[{n} times in all] {key[0]}: {self.first[key]}{where}\n")
            self.handle.close()
            self.handle = None
        if self.main and self.hidden and self.path is not None and self.path.exists():
            print(
                f"raco train: {self.hidden} other warning(s) (library and numerical notices) are in "
                f"{self.path}",
                file=sys.stderr,
            )


class _ToWarningLog(logging.Handler):
    def __init__(self, log: WarningLog) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.log_record(record)
        except Exception:  # a logging handler never raises
            self.handleError(record)


_ACTIVE: WarningLog | None = None


@contextmanager
def capture_warnings() -> Iterator[WarningLog]:
    """Within the block, route warnings through a :class:`WarningLog` (call ``attach`` once the run
    directory exists). Nested uses share the outermost log. The warning filters are not changed:
    what they ignore stays ignored, what they make an error still raises."""
    global _ACTIVE
    if _ACTIVE is not None:
        yield _ACTIVE
        return
    with warnings.catch_warnings():  # restores showwarning; also re-arms "once per location"
        log = WarningLog(warnings.showwarning)
        warnings.showwarning = log.showwarning
        handler = _ToWarningLog(log)
        loggers = [logging.getLogger(name) for name in _LOGGERS]
        for logger in loggers:
            logger.addHandler(handler)
        _ACTIVE = log
        try:
            yield log
        finally:
            _ACTIVE = None
            for logger in loggers:
                logger.removeHandler(handler)
            log.close()
