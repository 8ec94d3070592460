"""The training loop: setup → train → save, on accelerate (runs unchanged under ``accelerate launch``).

One optimizer step::

    micro-batches of step s (deterministic) → engine.accumulate(...) for each → engine.finish_step()
    (Σ a_i g_i written into .grad) → clip to max_grad_norm → AdamW step → scheduler step

A step whose loss or update is NaN/inf is skipped (no optimizer update, logged as ``skipped``); after
``train.max_consecutive_skips`` in a row the run stops with a checkpoint. Ctrl-C and out-of-memory
errors also leave a resumable checkpoint of the last completed step; both are folded into the step's
one all-reduce, so that under several processes every process stops at the same step.

The run directory's lifecycle: a checkpoint records how many ``metrics.jsonl`` records, which final
metrics and how much wall time the run had so far, and whether the final evaluation is in; a resumed
run (from any checkpoint, or from scratch when it was killed before the first) cuts the metrics back
to that record count, so a run killed and resumed any number of times ends with the files of the
uninterrupted run. Resuming a finished run changes nothing. ``RACO_TEST_KILL_AT`` names a point where
the process kills itself (checkpoint.fault_point), for tests.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import yaml
from torch.distributed.tensor import DTensor
from transformers.utils import logging as hf_logging

from raco.atomic import give_umask_modes
from raco.config import ConfigError, RunConfig, canonical_key, config_from_tree, load_config, save_config
from raco.data.packing import pack, real_tokens
from raco.gradients import MicroBatchStats, NonFiniteGradientError
from raco.gradients.sharding import gathered
from raco.gradients.store import all_reduce_sum
from raco.losses.pairwise import REWARD_SUMS, reward_means
from raco.metric_keys import objective_key
from raco.training import checkpoint as ckpt
from raco.training.evaluate import evaluate
from raco.training.inputs import eval_batches, step_micro_batches
from raco.training.metrics import (
    METRICS_FILE,
    MetricsLog,
    WarningLog,
    capture_warnings,
    report_metrics,
    summary_table,
    truncate_metrics,
)
from raco.training.session import CONFIG_FILE, Session, setup
from raco.training.summary import MODEL_DIR, SUMMARY_FILE, save_final

StepCallback = Callable[[int, dict[str, float]], None]


class TrainingStopped(RuntimeError):
    """The run stopped early (non-finite steps, out of memory); a checkpoint was written."""


@dataclass
class TrainResult:
    """Where a run's outputs are, and its final metrics."""

    run_dir: Path
    model_dir: Path
    metrics_file: Path
    summary_file: Path
    checkpoint: Path | None
    steps: int
    final_metrics: dict[str, float]
    already_complete: bool = False  # `resume` of a finished run: nothing was done


def _as_config(config: RunConfig | dict | str | Path, overrides: dict[str, Any] | None) -> RunConfig:
    if isinstance(config, RunConfig):
        if overrides:
            raise ConfigError("give overrides with a YAML path or a mapping, not with a RunConfig")
        return config
    if isinstance(config, dict):
        return config_from_tree(config, overrides)
    return load_config(config, overrides)


def train(
    config: RunConfig | dict | str | Path,
    overrides: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train as ``raco train`` does: ``config`` is a RunConfig, a nested mapping or a YAML path.

    ``overrides`` are dotted keys (``{"train.lr": 1e-5}``); ``on_step(step, metrics)`` is called after
    every optimizer step. Returns the output paths and the final metrics.
    """
    cfg = _as_config(config, overrides)
    with capture_warnings():
        session = setup(cfg)
        try:
            return run(session, on_step)
        except BaseException as err:
            _remove_if_nothing_done(session, err)
            raise


def _remove_if_nothing_done(s: Session, err: BaseException) -> None:
    """A new run that failed before its first step (e.g. ``method.path: fused`` on a model it does not
    support) leaves no run directory: nothing would be resumed, and re-running it must not be refused.
    Interruptions and stops keep theirs (they are resumable)."""
    if isinstance(err, KeyboardInterrupt | TrainingStopped) or s.step > 0:
        return
    if s.accelerator.is_main_process and ckpt.latest_checkpoint(s.run_dir) is None:
        shutil.rmtree(s.run_dir, ignore_errors=True)


# Options a resumed run may change: they steer logging and checkpointing, never the trajectory.
RESUME_OVERRIDABLE = (
    "log.every",
    "log.log_with",
    "log.project",
    "log.progress",
    "train.save_every",
    "train.keep_last",
    "train.eval_every",
    "train.max_consecutive_skips",
)
# Options a resumed run may change only to keep its checkpoint's global batch on another number of
# processes (checkpoint.check_layout): train.batch_size × processes must stay the same.
RESUME_LAYOUT = ("train.batch_size",)


def resume(
    run_dir: str | Path, on_step: StepCallback | None = None, overrides: dict[str, Any] | None = None
) -> TrainResult:
    """Continue the run in ``run_dir`` from its newest checkpoint, exactly as if never interrupted.

    ``overrides`` may change only ``RESUME_OVERRIDABLE`` options (logging and checkpointing), and
    ``RESUME_LAYOUT`` ones to resume on another number of processes with the same global batches
    (checked against the checkpoint); the run's ``config.yaml`` is updated with them once accepted."""

    run_dir = Path(run_dir)
    config_file = run_dir / CONFIG_FILE
    if not config_file.is_file():
        raise ConfigError(f"--resume: {run_dir} is not a raco run directory (no {CONFIG_FILE})")
    tree = yaml.safe_load(config_file.read_text())
    overrides = {canonical_key(key): value for key, value in (overrides or {}).items()}
    for key in overrides:
        if key not in RESUME_OVERRIDABLE + RESUME_LAYOUT:
            raise ConfigError(
                f"--{key}: cannot be changed when resuming (it would change the run's trajectory); "
                f"resumable options: {', '.join(RESUME_OVERRIDABLE)}, and {', '.join(RESUME_LAYOUT)} "
                "to keep the global batch on another number of processes"
            )
    finished = completed_run(run_dir)
    if finished is not None:  # nothing to do, and nothing is changed (not even config.yaml)
        return finished
    cfg = config_from_tree(tree, overrides, environment=False)
    cfg.output_dir = str(run_dir)
    layout_changed = [key for key in overrides if key in RESUME_LAYOUT]
    if overrides and not layout_changed:
        save_config(cfg, config_file)
    with capture_warnings():
        session = setup(cfg, resuming=True)  # also removes the temporaries a kill left behind
        try:
            latest = ckpt.latest_checkpoint(run_dir)
            if latest is not None:
                restore(session, latest)  # refuses a batch layout that changes the trajectory
            elif layout_changed:
                raise ConfigError(
                    f"--{layout_changed[0]}: {run_dir} has no checkpoint yet, which would fix its "
                    "global batch; resume it without the option, or train it anew"
                )
            else:
                start_over(session)
            if layout_changed and session.accelerator.is_main_process:
                save_config(cfg, config_file)  # only once the checkpoint has accepted it
        except BaseException:
            session.release()
            raise
        return run(session, on_step)


def completed_run(run_dir: Path) -> TrainResult | None:
    """The result of the finished run in ``run_dir`` (its ``summary.json`` is complete and its newest
    checkpoint is that of the last step), or None when it still has something to do."""
    run_dir = Path(run_dir)
    latest = ckpt.latest_checkpoint(run_dir)
    summary_file = run_dir / SUMMARY_FILE
    if latest is None or not summary_file.is_file() or not (run_dir / MODEL_DIR).is_dir():
        return None
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, ValueError):  # torn by a kill while it was written: finish the run again
        return None
    step = int(latest.name.rsplit("-", 1)[1])
    if not (isinstance(summary, dict) and summary.get("steps") == summary.get("total_steps") == step):
        return None
    return TrainResult(
        run_dir=run_dir,
        model_dir=run_dir / MODEL_DIR,
        metrics_file=run_dir / METRICS_FILE,
        summary_file=summary_file,
        checkpoint=latest,
        steps=step,
        final_metrics=summary.get("final_metrics", {}),
        already_complete=True,
    )


def start_over(s: Session) -> None:
    """Resume a run killed before its first checkpoint: from step 0, with no metrics records."""
    if s.accelerator.is_main_process:
        truncate_metrics(s.run_dir / METRICS_FILE, 0, records=0)
    s.accelerator.wait_for_everyone()


def restore(s: Session, folder: Path) -> None:
    """Load weights, optimizer, scheduler, this process's RNG states and position from checkpoint
    ``folder`` (a ``ConfigError`` if this run would not continue its trajectory: another global
    batch, or another number of processes where that matters: checkpoint.check_layout)."""
    layout = ckpt.BatchLayout(
        batch_size=s.cfg.train.batch_size,
        rank_local_solve=s.cfg.method.solve_per == "microbatch" and s.engine.path != "scalarized",
        random_draws=ckpt.random_draws(s.model),
    )
    rank, processes = s.accelerator.process_index, s.accelerator.num_processes
    saved = ckpt.read_checkpoint(folder, rank, processes, layout)
    if saved.get("sharded"):  # FSDP2: model and optimizer shards through torch.distributed.checkpoint
        ckpt.load_sharded(folder, s.model, s.optimizer)  # on any number of processes, sharded or not
    elif s.engine.sharded:  # an unsharded checkpoint (one process, replicated) into FSDP2 shards
        ckpt.load_full_into_sharded(s.model, s.optimizer, saved["trainable"], saved["optim"]["optimizer"])
    else:
        ckpt.load_trainable(s.model, saved["trainable"])
        s.optimizer.load_state_dict(saved["optim"]["optimizer"])
    s.scheduler.load_state_dict(saved["optim"]["scheduler"])
    ckpt.set_rng_state(saved["rng"])
    state = saved["state"]
    s.step, s.skips_in_a_row, s.skipped_steps = state["step"], state["skips_in_a_row"], state["skipped_steps"]
    if state.get("gradient_path") == "plain":  # `auto` fell back before the checkpoint: stay there
        s.engine.path = "plain"
    if "loss_scale" in state:
        s.loss_scale.load_state_dict(state["loss_scale"])
    s.last_metrics = dict(state.get("last_metrics", {}))
    s.final_evaluated = bool(state.get("final", False))
    s.wall_offset = float(state.get("wall_seconds", 0.0))
    if s.accelerator.is_main_process:
        truncate_metrics(s.run_dir / METRICS_FILE, s.step, state.get("metrics_records"))
    s.accelerator.wait_for_everyone()


def _wall_seconds(s: Session) -> float:
    """Wall time of the run so far: earlier segments (up to their last checkpoint) and this one."""
    return s.wall_offset + (time.time() - s.segment_started if s.segment_started else 0.0)


def save_checkpoint(s: Session) -> Path | None:
    """Write a checkpoint of the current step (main process, with every process's RNG state), keeping
    the newest ``keep_last``. Call on every process. A sharded model (FSDP2) and its optimizer are
    written by every process (torch.distributed.checkpoint), the rest by the main process."""
    s.accelerator.wait_for_everyone()
    rng_states = ckpt.gather_to_main(ckpt.rng_state())
    sharded = s.engine.sharded
    path = None
    files: dict[str, Any] = {}
    if s.accelerator.is_main_process:
        assert rng_states is not None  # gather_to_main gives the list on the main process (rank 0)
        state = {
            "step": s.step,
            "skips_in_a_row": s.skips_in_a_row,
            "skipped_steps": s.skipped_steps,
            "gradient_path": s.engine.path,
            "loss_scale": s.loss_scale.state_dict(),
            "processes": s.accelerator.num_processes,
            "batch_size": s.cfg.train.batch_size,  # with processes: the global micro-batch
            "last_metrics": s.last_metrics,
            "final": s.final_evaluated,
            "wall_seconds": _wall_seconds(s),
        }
        if s.log is not None:
            state["metrics_records"] = s.log.records
        files = {
            **({} if sharded else {"trainable.safetensors": ckpt.trainable_state(s.model)}),
            "optimizer.pt": {"scheduler": s.scheduler.state_dict()}
            | ({} if sharded else {"optimizer": s.optimizer.state_dict()}),
            **{f"rng-{rank}.pt": rng for rank, rng in enumerate(rng_states)},
            "state.json": state,
            CONFIG_FILE: (s.run_dir / CONFIG_FILE).read_text(),
        }
        if not sharded:
            path = ckpt.write_checkpoint(s.run_dir, s.step, files, s.cfg.train.keep_last)
    if sharded:
        keep = s.cfg.train.keep_last
        path = ckpt.write_sharded_checkpoint(s.run_dir, s.step, files, keep, s.model, s.optimizer)
    s.accelerator.wait_for_everyone()
    return path if s.accelerator.is_main_process else None


@dataclass(frozen=True)
class _StepTotals:
    """A step's additive statistics over its whole global batch (every micro-batch, every process)."""

    losses: torch.Tensor  # [k] per-objective losses L_i
    rewards: torch.Tensor  # [k, len(REWARD_SUMS)] reward sums (losses/pairwise.py)
    tokens: float  # non-padding tokens
    stop: bool = False  # Ctrl-C was pressed on some process
    out_of_memory: bool = False  # some process ran out of memory in this step's micro-batches


def _step_totals(
    s: Session, batches: list[dict], micro: list[MicroBatchStats], stop: bool = False, oom: bool = False
) -> _StepTotals:
    """Sum this process's micro-batch statistics, then all processes' (one all-reduce), so that every
    logged value is that of the global batch, not of one process or one micro-batch. The same
    all-reduce carries this process's Ctrl-C and out-of-memory flags, so that every process takes the
    same decision at the same step (a checkpoint's collectives would hang if only one did)."""
    k = len(s.specs)
    losses = sum((m.losses for m in micro), torch.zeros(k, dtype=torch.float64))
    tokens = sum(real_tokens(b) for b in batches)
    rewards = sum((m.reward_sums for m in micro), torch.zeros(k, len(REWARD_SUMS), dtype=torch.float64))
    head = torch.cat([losses, torch.tensor([tokens, float(stop), float(oom)], dtype=torch.float64)])
    flat = torch.cat([head, rewards.flatten()]).to(s.accelerator.device)  # collectives: on the device
    all_reduce_sum([flat])
    flat = flat.cpu()
    return _StepTotals(
        flat[:k],
        flat[k + 3 :].reshape(rewards.shape),
        float(flat[k]),
        stop=bool(flat[k + 1] > 0),
        out_of_memory=bool(flat[k + 2] > 0),
    )


def _batch_metrics(s: Session, totals: _StepTotals, started: float) -> dict[str, float]:
    """Losses, reward metrics and token counts of the global batch; the throughput is that of all
    processes. ``loss`` is Σ w_i L_i (the mean for mgda, which the weights do not steer)."""
    seconds = max(time.perf_counter() - started, 1e-9)
    weights = torch.as_tensor(_reported_weights(s), dtype=torch.float64)
    metrics = {"loss": float(weights @ totals.losses)}
    for spec, loss in zip(s.specs, totals.losses, strict=True):
        metrics[objective_key(spec.name, "loss")] = float(loss)
    metrics.update(reward_means(totals.rewards, s.specs))
    metrics.update(tokens=totals.tokens, tokens_per_second=totals.tokens / seconds)
    return metrics


def _reported_weights(s: Session) -> list[float]:
    """The weights of the weighted figures a run reports: the user's, or uniform for mgda."""
    k = len(s.specs)
    return [1.0 / k] * k if s.cfg.method.name == "mgda" else [float(w) for w in s.cfg.weights]


def _step_metrics(
    s: Session, report, totals: _StepTotals, grad_norm: float, started: float
) -> dict[str, float]:
    metrics = report_metrics(report, [spec.name for spec in s.specs])
    metrics.update(_batch_metrics(s, totals, started), grad_norm=grad_norm)
    return {**metrics, **_schedule_metrics(s)}


def _schedule_metrics(s: Session) -> dict[str, float]:
    """Learning rate, and the loss scale of float16 runs: logged for applied and skipped steps alike."""
    metrics = {"learning_rate": s.scheduler.get_last_lr()[0]}
    if s.loss_scale.enabled:
        metrics["loss_scale"] = s.loss_scale.scale
    return metrics


def train_step(s: Session, interrupted: bool = False) -> dict[str, float]:
    """One optimizer step on the deterministic micro-batches of step ``s.step``; ``interrupted``: Ctrl-C
    was pressed here (``s.stop_requested`` says whether any process asked to stop).

    A ``torch.OutOfMemoryError`` in a micro-batch on any process is raised on every process, after
    the step's all-reduce, with the step left undone."""
    started = time.perf_counter()
    pairs = step_micro_batches(s.data.train, s.plan, s.step, s.cfg.train.seed, s.accelerator.process_index)
    batches = [s.to_device(pack(s.collator(mb)) if s.cfg.data.packing else s.collator(mb)) for mb in pairs]
    counts = s.engine.step_counts(batches)
    micro: list[MicroBatchStats] = []
    out_of_memory = None
    try:
        for batch in batches:
            with s.autocast():
                micro.append(s.engine.accumulate(batch, counts=counts, loss_scale=s.loss_scale.value))
    except torch.OutOfMemoryError as err:
        out_of_memory, micro = err, []
        _free_memory(s)
    totals = _step_totals(s, batches, micro, stop=interrupted, oom=out_of_memory is not None)
    s.stop_requested = totals.stop
    if totals.out_of_memory:
        if out_of_memory is not None:
            raise out_of_memory
        raise torch.OutOfMemoryError("out of memory on another process")
    try:
        report = s.engine.finish_step()
    except NonFiniteGradientError:
        return _skip_non_finite(s, totals, started)
    max_norm = s.cfg.train.max_grad_norm if s.cfg.train.max_grad_norm is not None else math.inf
    grad_norm = _clip_grad_norm(s, max_norm)
    finite = math.isfinite(grad_norm) and bool(torch.isfinite(report.losses).all())
    if finite:
        s.optimizer.step()
        s.skips_in_a_row = 0
        s.loss_scale.success()
    else:
        _count_skip(s)
    _advance_schedule(s)
    s.optimizer.zero_grad(set_to_none=True)
    metrics = _step_metrics(s, report, totals, grad_norm, started)
    metrics["skipped"] = float(not finite)
    return metrics


def _clip_grad_norm(s: Session, max_norm: float) -> float:
    """Clip the update to ``max_norm`` (global norm); returns the norm before clipping. Under FSDP2
    the norm of the sharded ``.grad`` is a DTensor, reduced over the shards by ``full_tensor``."""
    norm = torch.nn.utils.clip_grad_norm_(s.params, max_norm)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def _count_skip(s: Session) -> None:
    """A step with non-finite gradients or loss. Under float16 loss scaling this is usually an
    overflow: S is halved and the step does not count towards ``max_consecutive_skips`` while S > 1."""
    s.skipped_steps += 1
    overflow = s.loss_scale.enabled and s.loss_scale.scale > 1.0
    if s.loss_scale.enabled:
        s.loss_scale.overflow()
    if not overflow:
        s.skips_in_a_row += 1


def _advance_schedule(s: Session) -> None:
    """Skipped steps still advance the schedule (the step count is the data position)."""
    with warnings.catch_warnings():  # torch warns when no optimizer step preceded it: intended here
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        s.scheduler.step()


def _skip_non_finite(s: Session, totals: _StepTotals, started: float) -> dict[str, float]:
    """Discard a step whose per-objective gradients are not finite (no update; counted as skipped)."""
    s.engine.discard_step()
    s.optimizer.zero_grad(set_to_none=True)
    _count_skip(s)
    _advance_schedule(s)
    metrics = _batch_metrics(s, totals, started)
    metrics.update(_schedule_metrics(s), skipped=1.0, grad_norm=math.nan)
    return metrics


def _free_memory(s: Session) -> None:
    """After an out-of-memory error: drop the failed step's partial gradients and cached blocks."""
    s.engine.discard_step()
    s.optimizer.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_evaluation(s: Session, pairs: bool = True, generation: bool = False) -> dict[str, float]:
    """Held-out metrics: preference metrics on the held-out ``pairs`` (none without evaluation data),
    and with ``generation`` the judged answers to held-out prompts (``eval.generate_every``)."""
    metrics: dict[str, float] = {}
    if pairs and s.data.eval:
        size = s.cfg.train.eval_batch_size
        batches = (s.to_device(b) for b in eval_batches(s.data.eval, s.collator, size))
        with s.autocast():
            weights = None if s.cfg.method.name == "mgda" else s.cfg.weights  # mgda is not steered by w
            chunk = s.cfg.model.logprob_chunk
            metrics.update(evaluate(s.model, batches, s.specs, weights, s.eval_reference, chunk_tokens=chunk))
    if generation and s.judge is not None:
        model = s.accelerator.unwrap_model(s.model)
        metrics.update(s.judge.metrics(model, s.tokenizer, s.autocast))
    return metrics


class _Interrupt:
    """First Ctrl-C: finish the step, checkpoint, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.hit = False
        self.previous: Callable[[int, FrameType | None], Any] | int | None = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def _loop(s: Session, log: MetricsLog, on_step: StepCallback | None, warned: WarningLog) -> None:
    cfg = s.cfg
    single = s.accelerator.num_processes == 1
    with _Interrupt() as interrupt:
        while s.step < s.plan.total_steps:
            warned.when = f"step {s.step + 1}"
            try:
                metrics = train_step(s, interrupted=interrupt.hit)
            except torch.OutOfMemoryError as err:
                _free_memory(s)  # the failed step leaves nothing behind: state is that of s.step
                path = save_checkpoint(s)
                raise TrainingStopped(
                    f"out of memory at step {s.step + 1}; resumable checkpoint {path}; "
                    "try a smaller train.batch_size or model.gradient_checkpointing"
                ) from err
            s.step += 1
            pairs = _due(s.step, cfg.train.eval_every, 0)
            generation = _due(s.step, cfg.eval.generate_every, 0)
            if s.step < s.plan.total_steps and (pairs or generation):
                metrics.update(run_evaluation(s, pairs, generation))
            if _due(s.step, cfg.log.every, s.plan.total_steps) or any(k.startswith("eval/") for k in metrics):
                log.log(s.step, metrics)
            log.advance(s.step, metrics)
            s.last_metrics.update(metrics)
            if on_step is not None:
                on_step(s.step, metrics)
            ckpt.fault_point("before-first-checkpoint", lambda: ckpt.latest_checkpoint(s.run_dir) is None)
            if s.skips_in_a_row >= cfg.train.max_consecutive_skips:
                path = save_checkpoint(s)
                raise TrainingStopped(
                    f"{s.skips_in_a_row} consecutive steps had a non-finite loss or "
                    f"gradient (last: step {s.step}); checkpoint {path}. Lower train.lr "
                    "or check the data"
                )
            # every process decides on the all-reduced flag (one process alone would hang in the
            # checkpoint's collectives); alone, a Ctrl-C after that all-reduce counts at once
            if s.stop_requested or (single and interrupt.hit):
                path = save_checkpoint(s)
                raise KeyboardInterrupt(f"interrupted after step {s.step}; checkpoint {path}")
            if s.step < s.plan.total_steps and _due(s.step, cfg.train.save_every, 0):
                save_checkpoint(s)


@contextmanager
def _no_library_progress_bars():
    """transformers' "Writing model shards" bar at the end of a run tells the user nothing."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def run(s: Session, on_step: StepCallback | None = None) -> TrainResult:
    """Train from ``s.step`` to the end, evaluate, save the model and the summary. Warnings are
    written to ``RUN_DIR/warnings.log``; only those the user can act on reach the console."""
    try:
        with capture_warnings() as warned:
            warned.attach(s.run_dir, s.accelerator.is_main_process)
            return _run(s, on_step, warned)
    finally:
        s.release()


def _run(s: Session, on_step: StepCallback | None, warned: WarningLog) -> TrainResult:
    log = MetricsLog(
        s.run_dir,
        s.accelerator,
        s.plan.total_steps,
        s.step,
        s.cfg.log.progress,
        tuple(spec.name for spec in s.specs),
    )
    s.log = log
    s.segment_started = time.time()
    resumed_final = s.final_evaluated  # resumed from the final checkpoint: only the model is missing
    try:
        if not resumed_final:
            _loop(s, log, on_step, warned)
            warned.when = "final evaluation"
            final_eval = run_evaluation(s, generation=True)
            if final_eval:
                log.log(s.step, final_eval)
            s.last_metrics.update(final_eval)
            s.final_evaluated = True
    finally:
        log.close()
    warned.when = "saving"
    path = ckpt.latest_checkpoint(s.run_dir) if resumed_final else save_checkpoint(s)
    ckpt.fault_point("after-last-checkpoint-before-model")
    with _no_library_progress_bars(), gathered(s.model, keep=s.accelerator.is_main_process):  # FSDP2
        result = save_final(s, s.last_metrics, _wall_seconds(s))
    if s.accelerator.is_main_process:
        give_umask_modes(Path(result["model_dir"]))  # safetensors files come 0o600
    if s.accelerator.is_main_process:
        print(
            f"raco train: {s.step} steps, run directory {s.run_dir}\n"
            + summary_table(s.last_metrics, result["objectives"])
        )
    return TrainResult(
        run_dir=s.run_dir,
        model_dir=Path(result["model_dir"]),
        metrics_file=s.run_dir / METRICS_FILE,
        summary_file=s.run_dir / "summary.json",
        checkpoint=path,
        steps=s.step,
        final_metrics=dict(s.last_metrics),
    )
