"""Setup of a training run: accelerator, data, model, reference, engine, optimizer, run directory.

Everything that can be wrong with the configuration or the data is checked here before the model is
loaded (the config itself was validated when it was built), and the run directory is created only
once everything else has succeeded: a bad config, bad data or a model that cannot be loaded leaves no
run directory behind (and an existing one, with ``overwrite: true``, untouched).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from transformers import PreTrainedTokenizerBase, get_scheduler

from raco.config import (
    ConfigError,
    RunConfig,
    differences,
    method_options,
    method_plan,
    save_config,
    to_dict,
)
from raco.data.collate import PairCollator
from raco.data.packing import packing_problem
from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec
from raco.losses.logps import unwrap_causal_lm
from raco.models.loading import load_tokenizer, prepare_base, wrap_policy
from raco.models.reference import (
    NO_REFERENCE,
    AdapterReference,
    FrozenReference,
    Reference,
    cached_reference,
    frozen_copy,
    pairs_fingerprint,
    resolve_reference_kind,
    shared_reference_table,
    weights_fingerprint,
)
from raco.training.checkpoint import lock_run_dir, remove_stale_temporaries
from raco.training.distribution import distribute, distribute_reference, distribution_mode
from raco.training.inputs import PreparedData, StepPlan, make_plan, prepare_data
from raco.training.judge import GenerationJudge
from raco.training.precision import DynamicLossScale, autocast, uses_mixed_float16

CONFIG_FILE = "config.yaml"


@dataclass
class Session:
    """Everything a run needs between setup and save."""

    cfg: RunConfig
    run_dir: Path
    accelerator: Accelerator
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    data: PreparedData
    plan: StepPlan
    specs: list[ObjectiveSpec]
    engine: GradientEngine
    optimizer: torch.optim.Optimizer
    scheduler: Any
    collator: PairCollator
    reference: Reference  # π_ref of the training rows (the engine's)
    eval_reference: Reference = NO_REFERENCE  # π_ref of the held-out rows (a separate table when cached)
    loss_scale: DynamicLossScale = field(default_factory=DynamicLossScale)
    step: int = 0
    skips_in_a_row: int = 0
    skipped_steps: int = 0
    # the run's lifecycle (checkpointed, so that a resumed run ends as the uninterrupted one would)
    last_metrics: dict = field(default_factory=dict)  # what the run reports at its end, so far
    final_evaluated: bool = False  # the final evaluation is done and logged
    wall_offset: float = 0.0  # seconds of earlier segments of a resumed run (up to their checkpoint)
    segment_started: float = 0.0  # time.time() when this segment's training began
    log: Any = None  # the MetricsLog while running (its record count goes into checkpoints)
    stop_requested: bool = False  # Ctrl-C on any process, agreed on by all at the step's all-reduce
    lock: Any = None  # the run directory's lock (main process), held from setup to the end of run
    judge: GenerationJudge | None = None  # eval.generate_every: answers to held-out prompts, scored

    def release(self) -> None:
        """Let other processes use the run directory (at the end of ``run``)."""
        _release(self.lock)
        self.lock = None

    def autocast(self):
        """bfloat16/float16 autocast for mixed-precision runs, else a no-op context."""
        return autocast(self.cfg.model.dtype, self.accelerator.device)

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}


def objective_specs(cfg: RunConfig) -> list[ObjectiveSpec]:
    """Engine objective specs, with the losses of the run's method plan (``amopo``: AMoPO's loss for
    every objective)."""
    plan = method_plan(cfg)
    specs = []
    for o in cfg.objectives:
        loss = plan.objective_loss(o.loss)
        specs.append(ObjectiveSpec(o.name, loss, o.beta, label_smoothing=o.label_smoothing, gamma=o.gamma))
    return specs


def _exists_message(run_dir: Path, cfg: RunConfig) -> str:
    """Why an existing output_dir is refused; ``--resume`` is offered only when it holds this run."""
    other = (
        "choose another output_dir (`--output_dir`, or overrides={'output_dir': ...}) or set overwrite: true"
    )
    saved = run_dir / CONFIG_FILE
    try:
        changed = differences(yaml.safe_load(saved.read_text()), cfg) if saved.is_file() else None
    except (OSError, yaml.YAMLError, ConfigError, TypeError, ValueError):  # unreadable: "another run"
        changed = ["(its config.yaml cannot be read)"]
    if changed is None:
        return f"output_dir: {run_dir} already exists and is not empty; {other}"
    if changed:
        return (
            f"output_dir: {run_dir} holds another run ({'; '.join(changed[:4])}); {other}. "
            f"`raco train --resume {run_dir}` would continue that run with its own config"
        )
    return (
        f"output_dir: {run_dir} already exists; continue it with `raco train --resume {run_dir}`, or {other}"
    )


def check_run_dir(cfg: RunConfig, resuming: bool) -> bool:
    """Whether the run directory exists (non-empty); an error unless resuming or ``overwrite``."""
    run_dir = Path(cfg.output_dir)
    exists = run_dir.exists() and any(run_dir.iterdir())
    if exists and not resuming and not cfg.overwrite:
        raise ConfigError(_exists_message(run_dir, cfg))
    return exists


def prepare_run_dir(cfg: RunConfig, accelerator: Accelerator, resuming: bool) -> Any:
    """Create the run directory (the last step of setup, so that a failed setup leaves none) and lock
    it for this run (a ``ConfigError`` if a run still going holds it); when resuming, remove the
    temporaries a killed run left in it. Returns the lock (main process; None elsewhere)."""
    run_dir = Path(cfg.output_dir)
    exists = check_run_dir(cfg, resuming)
    accelerator.wait_for_everyone()
    lock = None
    if accelerator.is_main_process:
        if exists:
            lock = lock_run_dir(run_dir)  # never clean or replace the directory of a live run
        if exists and not resuming:
            shutil.rmtree(run_dir)
            _release(lock)
            lock = None
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = lock or lock_run_dir(run_dir)
        if resuming:
            remove_stale_temporaries(run_dir)
        else:
            save_config(cfg, run_dir / CONFIG_FILE)
    accelerator.wait_for_everyone()
    return lock


def _release(lock: Any) -> None:
    if lock is not None:
        lock.close()


def reference_kind(cfg: RunConfig, specs: list[ObjectiveSpec]) -> str:
    """The concrete reference kind of the run (a ``ConfigError`` for an impossible combination)."""
    needs_reference = any(spec.needs_reference for spec in specs)
    try:
        return resolve_reference_kind(cfg.model.reference, cfg.lora.enabled, needs_reference)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def make_accelerator(cfg: RunConfig) -> Accelerator:
    """An accelerator (CPU when no GPU); trackers only when asked."""
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        log_with=list(cfg.log.log_with) or None,
        project_dir=cfg.output_dir,
    )


def _optimizer_and_scheduler(cfg: RunConfig, params: list[nn.Parameter], total: int) -> tuple[Any, Any]:
    t = cfg.train
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.adam_betas), weight_decay=t.weight_decay)
    name = "constant_with_warmup" if t.schedule == "constant" else t.schedule
    scheduler = get_scheduler(
        name, optimizer, num_warmup_steps=int(t.warmup_ratio * total), num_training_steps=total
    )
    return optimizer, scheduler


def _load_model(cfg: RunConfig, tokenizer, kind: str) -> tuple[nn.Module, Reference]:
    """The policy and its reference (``cached``: adapters off or the initial weights, until the tables
    replace it)."""
    base = prepare_base(cfg.model, cfg.lora, len(tokenizer))
    chunk, share = cfg.model.logprob_chunk, cfg.model.share_prompt
    reference: Reference = frozen_copy(base, chunk, share) if kind == "copy" else NO_REFERENCE
    policy = wrap_policy(base, cfg.model, cfg.lora)
    if kind == "adapter" or (kind == "cached" and cfg.lora.enabled):
        reference = AdapterReference(policy, chunk, share)
    elif kind == "cached":
        reference = FrozenReference(policy, chunk, share)  # the policy's weights are still the initial ones
    return policy, reference


def _cached_tables(s: Session, base_fingerprint: str) -> tuple[Reference, Reference]:
    """Reference log-probs of train and eval rows from the on-disk cache, computed once by the session's
    live reference (adapters off, or the initial weights)."""
    policy, live = s.model, s.reference

    def table(pairs: list, part: str):
        key = {
            "model": s.cfg.model.name,
            "revision": s.cfg.model.revision,
            "dtype": s.cfg.model.dtype,
            "gguf": s.cfg.model.gguf_file,
            "weights": base_fingerprint,
            "pairs": pairs_fingerprint(pairs),
            "max_length": s.cfg.data.max_length,
            "logprob_chunk": s.cfg.model.logprob_chunk,  # the same numbers up to float rounding
            **({"share_prompt": True} if s.cfg.model.share_prompt else {}),  # as logprob_chunk
            "max_prompt_length": s.cfg.data.max_prompt_length,
            "tokenizer": [type(s.tokenizer).__name__, len(s.tokenizer)],
            "part": part,
        }

        def compute():
            policy.eval()
            try:  # every process computes its share (a sharded policy's forwards are collectives)
                return shared_reference_table(
                    live,
                    pairs,
                    lambda chunk: s.to_device(s.collator(chunk)),
                    s.cfg.train.eval_batch_size,
                    device=s.accelerator.device,
                    progress=s.cfg.log.progress,
                )
            finally:
                policy.train()

        return cached_reference(key, compute, device=s.accelerator.device)

    return table(s.data.train, "train"), table(s.data.eval, "eval") if s.data.eval else NO_REFERENCE


def check_packing_model(model: nn.Module, cfg: RunConfig) -> None:
    """``data.packing`` up front: a ``ConfigError`` for a model whose forward cannot tell packed rows apart
    (no ``position_ids``); the engine checks the numbers on the first packed micro-batch."""
    causal_lm = unwrap_causal_lm(model)
    problem = packing_problem(causal_lm)
    if problem is not None:
        model_type = getattr(causal_lm.config, "model_type", type(causal_lm).__name__)
        raise ConfigError(
            f"data.packing: model type {model_type!r} with model.attn_implementation "
            f"{cfg.model.attn_implementation!r}: {problem}; set data.packing: false"
        )


def _engine(
    cfg: RunConfig,
    model: nn.Module,
    specs: list[ObjectiveSpec],
    reference: Reference,
    accelerator: Accelerator,
) -> GradientEngine:
    """The run's gradient engine; what the engine refuses (e.g. ``method.path: plain`` on an FSDP2
    model) is a ``ConfigError`` naming the method settings."""
    try:
        return GradientEngine(
            model,
            specs,
            cfg.weights,
            method=method_plan(cfg).aggregator,
            method_options=method_options(cfg),
            path=cfg.method.path,
            solve_per=cfg.method.solve_per,
            reference=reference,
            normalize=cfg.method.normalize,
            device=accelerator.device,
            logprob_chunk=cfg.model.logprob_chunk,
            store=cfg.method.store,
            share_prompt=cfg.model.share_prompt,
        )
    except ValueError as err:
        raise ConfigError(
            f"method (path: {cfg.method.path}, solve_per: {cfg.method.solve_per}, store: "
            f"{cfg.method.store}): {err}"
        ) from err


def setup(cfg: RunConfig, resuming: bool = False) -> Session:
    """Build a run from a validated config (the checkpoint, if resuming, is restored by the caller).

    The order is the order of cost: configuration, data, model; the run directory comes last."""
    accelerator = make_accelerator(cfg)
    mode = distribution_mode(accelerator)  # a refused accelerate config fails before anything loads
    check_run_dir(cfg, resuming)
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    data = prepare_data(cfg, tokenizer)  # checks objectives against the data: before the model loads
    judge = GenerationJudge.build(cfg, data.eval_prompts, tokenizer)  # scorers load before the model
    plan = make_plan(cfg, len(data.train), accelerator.num_processes)
    specs = objective_specs(cfg)
    kind = reference_kind(cfg, specs)
    model, reference = _load_model(cfg, tokenizer, kind)
    if cfg.data.packing:
        check_packing_model(model, cfg)
    # with LoRA the tables are the adapter-disabled model's: its frozen base weights are all they read
    fingerprint = weights_fingerprint(model, frozen_only=cfg.lora.enabled) if kind == "cached" else ""
    model = distribute(accelerator, model, mode)
    reference = distribute_reference(accelerator, reference, mode)
    engine = _engine(cfg, model, specs, reference, accelerator)
    optimizer, scheduler = _optimizer_and_scheduler(
        cfg, [p for p in model.parameters() if p.requires_grad], plan.total_steps
    )
    session = Session(
        cfg,
        Path(cfg.output_dir),
        accelerator,
        model,
        tokenizer,
        data,
        plan,
        specs,
        engine,
        optimizer,
        scheduler,
        PairCollator(tokenizer.pad_token_id),
        reference,
        reference,
    )
    session.loss_scale.enabled = uses_mixed_float16(cfg.model.dtype)
    session.judge = judge
    if kind == "cached":
        with session.autocast():
            session.reference, session.eval_reference = _cached_tables(session, fingerprint)
        engine.reference = session.reference
    session.lock = prepare_run_dir(cfg, accelerator, resuming)
    try:
        if accelerator.is_main_process and cfg.log.log_with:
            accelerator.init_trackers(cfg.log.project, config=_flat(to_dict(cfg)))
    except BaseException:
        if accelerator.is_main_process and not resuming:
            shutil.rmtree(session.run_dir, ignore_errors=True)  # this invocation made it: leave none
        session.release()
        raise
    return session


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return out
