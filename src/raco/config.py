"""Typed run configuration: dataclasses, YAML loading, dotted command-line overrides, validation.

One source of truth: every option is a dataclass field whose ``metadata`` carries its help text and
allowed values; the YAML loader, the ``raco train`` flags and ``raco train --help`` are all generated
from these fields. Precedence: dataclass defaults < YAML file < command-line flags. Unknown keys and
bad values raise :class:`ConfigError` naming the key (and the closest valid key or value) before any
model or data is loaded.

Objectives are a list in YAML and are addressed by name on the command line::

    objectives:
      - {name: helpful, weight: 0.7, beta: 0.2}
      - {name: harmless, weight: 0.3}

    raco train --config run.yaml --train.lr 1e-5 --objectives.harmless.weight 0.4 ...

The option names of TRL and transformers' ``TrainingArguments`` that users type out of habit are in
one table, :data:`FOREIGN_NAMES`, read by both the YAML loader and the flags: a name whose meaning is
raco's own is accepted (with a note naming the raco key), any other is answered with raco's name and
what differs (``unknown option --beta; raco calls it objectives.NAME.beta: ...``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import logging
import os
import shlex
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from raco.atomic import atomic_write
from raco.config_tree import ConfigError, build, generic_key, meta, opt, set_dotted, suggest
from raco.config_tree import leaf_fields as _leaf_fields
from raco.eval.config import EvalObjective, GenerationSection, judged_objectives
from raco.registry import (
    DATASET_ADAPTERS,
    DTYPE_NAMES,
    GENERIC_ADAPTERS,
    LOSS_NAMES,
    METHOD_NAMES,
    MethodPlan,
    aggregator_options,
    method_help,
    or_list,
)
from raco.registry import method_plan as _plan_of

logger = logging.getLogger("raco.config")

SCHEDULES = ("cosine", "linear", "constant")
REFERENCES = ("auto", "adapter", "copy", "cached", "none")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
ATTN_PACKAGES = {
    "flash_attention_2": ("flash_attn", "flash-attn"),
    "flash_attention_3": ("flash_attn_interface", "flash-attn-3"),
}
"""Attention implementation -> (the module transformers imports for it, the pip package providing it)."""


def _scalarizable() -> list[str]:
    """The methods whose gradients one backward of the weighted loss gives exactly."""
    return [name for name in METHOD_NAMES if _plan_of(name).scalarizable]


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _fraction(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


@dataclass
class ModelConfig:
    """Which causal language model to train and how to load it."""

    name: str = opt(
        "tiny-random",
        "Hugging Face id, local folder, or built-in name (`tiny-random`, `smollm2-135m-instruct`)",
    )
    revision: str | None = opt(None, "model revision (branch, tag or commit) on the Hub")
    dtype: str = opt(
        "float32",
        "compute precision: float32; bfloat16 = mixed precision (float32 master weights and AdamW "
        "state, bfloat16 autocast); float16 = the same with float16 autocast and dynamic loss scaling",
        choices=DTYPE_NAMES,
    )
    pure_bf16: bool = opt(
        False,
        "with dtype bfloat16: keep the weights and AdamW state in bfloat16 too (half the memory, but "
        "lossy: updates below half a bfloat16 ulp of a weight, e.g. at lr 1e-6, round to nothing)",
    )
    gguf_file: str | None = opt(None, "GGUF file name inside `model.name` (a folder or Hub repo)")
    trust_remote_code: bool = opt(False, "allow the model repository's own Python code")
    gradient_checkpointing: bool = opt(False, "recompute activations in backward to save memory")
    logprob_chunk: int | None = opt(
        None,
        "compute log-probs this many response tokens at a time ([chunk, vocabulary] logits, recomputed in "
        "backward) instead of [tokens, vocabulary] at once; the same numbers; none = at once; 256-1024 "
        "for 128k+ vocabularies (not with FSDP2)",
        check=lambda v: _positive(v) if v is not None else None,
    )
    attn_implementation: str | None = opt(
        "sdpa",
        "attention kernel passed to transformers (`attn_implementation`) for the policy, its reference "
        "and evaluation: sdpa (torch's scaled_dot_product_attention), eager (plain matmul + softmax), "
        "flash_attention_2 / flash_attention_3 (GPU; the `flash-attn` / `flash-attn-3` package), "
        "flex_attention (torch's flex attention); none = transformers' own default",
        check=lambda v: None if v in ATTN_IMPLEMENTATIONS else f"is not {or_list(ATTN_IMPLEMENTATIONS)}",
    )
    share_prompt: bool = opt(
        False,
        "run each pair's prompt once and continue both responses from its key/value cache (the same "
        "log-probs; saves the prompt's share of the tokens, ~45% on Reddit summaries): the reference "
        "and every method.path (fused: exact when the objectives weigh a pair's responses alike, e.g. "
        "margin-only losses; else the plain path); not with gradient_checkpointing in training",
    )
    disable_dropout: bool = opt(
        True,
        "set the model's own dropout to 0, as TRL's DPO does (noise-free implicit rewards and reference); "
        "lora.dropout still applies",
    )
    reference: str = opt(
        "auto",
        "reference policy: adapter-disabled base (`adapter`, LoRA only), "
        "frozen `copy`, `cached` log-probs on disk, `none` (reference-free "
        "losses); `auto` = adapter with LoRA, copy otherwise, none for AMoPO",
        choices=REFERENCES,
    )
    seed: int = opt(0, "initialisation seed of the built-in `tiny-random` model")


@dataclass
class LoraConfig:
    """LoRA adapters through peft (``enabled: false`` = full fine-tuning)."""

    enabled: bool = opt(False, "train LoRA adapters instead of all weights")
    r: int = opt(8, "LoRA rank", check=_positive)
    alpha: float = opt(16.0, "LoRA scaling numerator (scale = alpha / r)", check=_positive)
    dropout: float = opt(0.0, "dropout on the LoRA input", check=_fraction)
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "v_proj"],
        metadata=meta("module names to adapt (comma-separated on the command line; `all-linear` for all)"),
    )
    load_in_4bit: bool = opt(False, "QLoRA: quantise the frozen base to 4 bits (GPU, bitsandbytes)")


@dataclass
class DataConfig:
    """Preference data: where it is and how it is tokenised."""

    train: str = opt("", "training preference file (.jsonl/.json/.csv/.parquet/folder) or HF dataset name")
    adapter: str = opt(
        "auto",
        f"row schema: auto, {', '.join(GENERIC_ADAPTERS)}, or a built-in adapter "
        f"({', '.join(DATASET_ADAPTERS)})",
    )
    split: str = opt("train", "dataset split of `train` (HF datasets and folders)")
    config_name: str | None = opt(None, "HF dataset configuration name")
    data_dir: str | None = opt(None, "HF dataset data_dir (e.g. helpful-base for Anthropic/hh-rlhf)")
    revision: str | None = opt(None, "HF dataset revision")
    columns: dict[str, str] = field(
        default_factory=dict,
        metadata=meta("role -> column (prompt, response_1, response_2, chosen, rejected)"),
    )
    labels: dict[str, str] = field(default_factory=dict, metadata=meta("objective -> label column"))
    directions: dict[str, str] = field(
        default_factory=dict, metadata=meta("objective -> higher|lower (lower flips the sign)")
    )
    options: dict[str, Any] = field(default_factory=dict, metadata=meta("adapter-specific options"))
    separate: dict[str, Any] = field(
        default_factory=dict,
        metadata=meta(
            "separate-datasets mode: objective -> {path_or_name, adapter, split, data_dir, ...} of a "
            "chosen/rejected dataset for that objective alone (YAML); replaces `train`"
        ),
    )
    on_invalid: str = opt(
        "error", "invalid rows: `error` stops, `skip` counts and drops them", choices=("error", "skip")
    )
    eval: str | None = opt(
        None, "held-out preference file/dataset (same schema); default: split `eval_fraction` off train"
    )
    eval_split: str | None = opt(None, "split of `eval` (or of `train` when `eval` is not given)")
    eval_fraction: float = opt(
        0.1, "fraction of train rows held out when `eval` is not given", check=_fraction
    )
    max_eval_rows: int | None = opt(None, "cap on the number of held-out rows evaluated")
    max_length: int = opt(512, "max tokens of prompt + response (longer rows are truncated)", check=_positive)
    max_prompt_length: int = opt(
        256, "max prompt tokens (prompts are truncated from the left)", check=_positive
    )
    packing: bool = opt(
        False,
        "padding-free training micro-batches: the rows concatenated into one sequence with per-row "
        "position ids, no padding computed (the same log-probs; checked on the first micro-batch, an "
        "error where the model or model.attn_implementation would let rows attend to each other); not "
        "with model.share_prompt",
    )


@dataclass
class ObjectiveConfig:
    """One objective: its name in the data, its weight and its preference loss."""

    name: str = opt(help="objective name, as in the data's `signs`/objective columns")
    weight: float | None = opt(
        None,
        "user weight; the weights lie on the simplex (all unset = uniform)",
        check=lambda v: _non_negative(v) if v is not None else None,
    )
    loss: str = opt("dpo", "per-objective preference loss", choices=LOSS_NAMES)
    beta: float = opt(0.1, "inverse temperature β of the loss", check=_positive)
    label_smoothing: float = opt(
        0.0,
        "conservative-DPO label smoothing ε in [0, 0.5)",
        check=lambda v: None if 0 <= v < 0.5 else "must be in [0, 0.5)",
    )
    gamma: float = opt(0.0, "SimPO target margin γ", check=_non_negative)


@dataclass
class MethodConfig:
    """How the k per-objective gradients are combined (docs/algorithm.md §2)."""

    name: str = opt(
        "raco",
        method_help(),
        choices=METHOD_NAMES,
    )
    c: float = opt(0.4, "CAGrad/RACO conflict radius c in [0, 1)", check=_fraction)
    solve_per: str = opt(
        "step",
        "solve the dual once per optimizer `step` (Algorithm 1) or per "
        "`microbatch` summing directions (the authors' code)",
        choices=("step", "microbatch"),
    )
    normalize: str = opt(
        "batch",
        "per-objective loss denominator: `batch` (all B pairs of the step, ties count 0: the paper's "
        "meaning of the weights) or `labeled` (the N_i pairs objective i labels; natural for separate "
        "datasets). See docs/training.md",
        choices=("batch", "labeled"),
    )
    path: str = opt(
        "auto",
        "per-objective gradients: `auto` (fused; plain for k = 1 or a model fused cannot split), "
        "`fused` (one backward, exact), `plain` (k backward passes), "
        f"`scalarized` (one backward of the weighted loss; {'/'.join(_scalarizable())} only, "
        "no Gram metrics)",
        choices=("auto", "fused", "plain", "scalarized"),
    )
    store: str = opt(
        "gradients",
        "what is kept until the dual is solved: `gradients` (the k per-objective gradients, k × the "
        "trainable parameters) or `gram` (only the k × k Gram matrix; one more backward per micro-batch "
        "forms the update; fused path and solve_per microbatch only; for models whose k gradient copies "
        "do not fit)",
        choices=("gradients", "gram"),
    )


@dataclass
class TrainConfig:
    """Optimisation, schedule, evaluation and checkpoint cadence."""

    lr: float = opt(5e-6, "peak learning rate of AdamW", check=_positive)
    weight_decay: float = opt(0.0, "AdamW weight decay", check=_non_negative)
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata=meta("AdamW betas"))
    schedule: str = opt("cosine", "learning-rate schedule after warm-up", choices=SCHEDULES)
    warmup_ratio: float = opt(0.1, "fraction of steps of linear warm-up", check=_fraction)
    max_grad_norm: float | None = opt(
        1.0, "clip the update direction to this norm (null = off)", check=_positive
    )
    epochs: float = opt(1.0, "passes over the training data (ignored when max_steps is set)", check=_positive)
    max_steps: int | None = opt(None, "optimizer steps to run (overrides epochs)")
    batch_size: int = opt(8, "preference pairs per micro-batch per process", check=_positive)
    grad_accum: int = opt(1, "micro-batches per optimizer step", check=_positive)
    seed: int = opt(0, "seed of data order, dropout and everything random")
    eval_every: int = opt(
        0, "evaluate on held-out data every N steps (0 = only at the end)", check=_non_negative
    )
    eval_batch_size: int = opt(16, "pairs per evaluation batch", check=_positive)
    save_every: int = opt(0, "checkpoint every N steps (0 = only at the end)", check=_non_negative)
    keep_last: int = opt(2, "checkpoints kept (older ones are deleted)", check=_positive)
    max_consecutive_skips: int = opt(5, "stop after N consecutive non-finite steps", check=_positive)


@dataclass
class LogConfig:
    """What the user sees: progress bar, JSONL metrics, trackers."""

    every: int = opt(1, "write metrics every N steps", check=_positive)
    log_with: list[str] = field(
        default_factory=list,
        metadata=meta("accelerate trackers (`tensorboard`, `wandb`; `none` = no tracker)"),
    )
    project: str = opt("raco", "tracker project name")
    progress: bool = opt(True, "show a progress bar")


@dataclass
class GenerationEvalConfig:
    """Generation judged during training: the policy answers held-out prompts, scorers judge the answers
    (docs/eval.md); logged as ``eval/<objective>/score``."""

    generate_every: int = opt(
        0,
        "every N steps and at the end, answer held-out prompts and score the answers with "
        "eval.objectives (0 = off)",
        check=_non_negative,
    )
    max_prompts: int = opt(16, "held-out prompts answered each time", check=_positive)
    objectives: list[EvalObjective] = field(
        default_factory=list, metadata=meta("judged objectives: scorer and direction (raco eval's)")
    )
    generation: GenerationSection = field(default_factory=GenerationSection)


@dataclass
class RunConfig:
    """A whole training run."""

    output_dir: str = opt("runs/raco", "run directory (never overwritten unless `overwrite`)")
    overwrite: bool = opt(False, "allow replacing an existing run directory")
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objectives: list[ObjectiveConfig] = field(
        default_factory=list, metadata=meta("objectives (default: all of the data's, uniform)")
    )
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: GenerationEvalConfig = field(default_factory=GenerationEvalConfig)

    @property
    def weights(self) -> list[float]:
        """Objective weights in order (uniform when none was given)."""
        given = [o.weight for o in self.objectives]
        weights = [float(w) for w in given if w is not None]
        if not weights:
            return [1.0 / len(given)] * len(given) if given else []
        if len(weights) < len(given):  # see validate()
            raise ConfigError("objectives.*.weight: give every objective a weight, or none")
        return weights


def method_plan(cfg: RunConfig) -> MethodPlan:
    """``method.name`` expanded: the aggregator, the loss that replaces every objective's own (if any),
    and so whether the run needs a reference (:meth:`MethodPlan.needs_reference`)."""
    return _plan_of(cfg.method.name)


def method_options(cfg: RunConfig) -> dict[str, Any]:
    """The options of the run's aggregator, read from ``method`` by the aggregator's declaration."""
    return aggregator_options(method_plan(cfg).aggregator, dataclasses.asdict(cfg.method))


class Foreign(NamedTuple):
    """An option name of TRL or transformers, and raco's counterpart (an entry of :data:`FOREIGN_NAMES`)."""

    key: str
    """The raco key (``objectives.NAME.<field>`` for what raco sets per objective)."""
    same: bool
    """The meaning is exactly raco's: the name is accepted as an alias, with a note naming the key."""
    note: str = ""
    """When not the same: what raco does instead (part of the error message)."""
    source: str = ""
    """Where users know the name from; ``(transformers 4)`` / ``(older TRL)`` marks names since dropped."""


_TA, _DPO, _MODEL, _SCRIPT = "TrainingArguments", "DPOConfig", "ModelConfig", "ScriptArguments"
_PER_OBJECTIVE = "set per objective, as each objective has its own loss"
_DTYPE_NOTE = (
    "float32, or bfloat16/float16 mixed precision over float32 master weights (no auto); bfloat16 "
    "weights as torch_dtype loads them are --model.pure_bf16 true (lossy)"
)

_TRL_LOSS = {"dpo": "dpo (TRL's sigmoid)"}
FOREIGN_NAMES: dict[str, Foreign] = {
    # transformers.TrainingArguments
    "learning_rate": Foreign("train.lr", True, source=_TA),
    "per_device_train_batch_size": Foreign("train.batch_size", True, source=_TA),
    "per_device_eval_batch_size": Foreign("train.eval_batch_size", True, source=_TA),
    "gradient_accumulation_steps": Foreign("train.grad_accum", True, source=_TA),
    "num_train_epochs": Foreign("train.epochs", True, source=_TA),
    "max_steps": Foreign("train.max_steps", True, source=_TA),
    "warmup_ratio": Foreign("train.warmup_ratio", True, source=f"{_TA} (transformers 4)"),
    "warmup_steps": Foreign(
        "train.warmup_ratio", False, "warm-up is a fraction of the steps (0.1 = the first 10%)", _TA
    ),
    "lr_scheduler_type": Foreign(
        "train.schedule",
        False,
        "cosine, linear or constant, each after train.warmup_ratio of linear warm-up (constant is "
        "Trainer's constant_with_warmup)",
        _TA,
    ),
    "weight_decay": Foreign(
        "train.weight_decay",
        False,
        "AdamW's decay of every trainable parameter (Trainer exempts biases and norm weights)",
        _TA,
    ),
    "optim": Foreign(
        "train.adam_betas",
        False,
        "the optimizer is always torch AdamW, set by train.lr, train.adam_betas and train.weight_decay",
        _TA,
    ),
    "adam_beta1": Foreign(
        "train.adam_betas", False, "both betas in one list: --train.adam_betas 0.9,0.999", _TA
    ),
    "adam_beta2": Foreign(
        "train.adam_betas", False, "both betas in one list: --train.adam_betas 0.9,0.999", _TA
    ),
    "max_grad_norm": Foreign("train.max_grad_norm", True, source=_TA),
    "seed": Foreign("train.seed", True, source=_TA),
    "data_seed": Foreign("train.seed", False, "one seed orders the data and drives dropout", _TA),
    "logging_steps": Foreign("log.every", True, source=_TA),
    "save_steps": Foreign("train.save_every", True, source=_TA),
    "save_total_limit": Foreign("train.keep_last", True, source=_TA),
    "save_strategy": Foreign(
        "train.save_every", False, "a checkpoint every train.save_every steps (0 = only at the end)", _TA
    ),
    "eval_steps": Foreign("train.eval_every", True, source=_TA),
    "eval_strategy": Foreign(
        "train.eval_every",
        False,
        "held-out evaluation every train.eval_every steps (0 = only at the end), and always at the end",
        _TA,
    ),
    "evaluation_strategy": Foreign(
        "train.eval_every",
        False,
        "held-out evaluation every train.eval_every steps (0 = only at the end), and always at the end",
        f"{_TA} (transformers 4)",
    ),
    "bf16": Foreign(
        "model.dtype",
        False,
        "--model.dtype bfloat16 is bfloat16 autocast over float32 master weights, as Trainer's bf16 on a "
        "float32 model (--model.pure_bf16 true keeps bfloat16 weights: lossy)",
        _TA,
    ),
    "fp16": Foreign(
        "model.dtype",
        False,
        "--model.dtype float16 is mixed precision with dynamic loss scaling, as Trainer's fp16",
        _TA,
    ),
    "gradient_checkpointing": Foreign("model.gradient_checkpointing", True, source=_TA),
    "report_to": Foreign("log.log_with", True, source=_TA),
    "disable_tqdm": Foreign("log.progress", False, "the opposite switch: --log.progress false", _TA),
    "overwrite_output_dir": Foreign("overwrite", True, source=f"{_TA} (transformers 4)"),
    # trl.DPOConfig
    "beta": Foreign("objectives.NAME.beta", False, f"β is {_PER_OBJECTIVE}", _DPO),
    "loss_type": Foreign(
        "objectives.NAME.loss",
        False,
        f"the loss is {_PER_OBJECTIVE}: {or_list([_TRL_LOSS.get(n, n) for n in LOSS_NAMES])}",
        _DPO,
    ),
    "label_smoothing": Foreign("objectives.NAME.label_smoothing", False, _PER_OBJECTIVE, _DPO),
    "max_length": Foreign("data.max_length", True, source=_DPO),
    "max_prompt_length": Foreign("data.max_prompt_length", True, source=f"{_DPO} (older TRL)"),
    "max_completion_length": Foreign(
        "data.max_length",
        False,
        "raco bounds prompt + response (data.max_length) and the prompt (data.max_prompt_length)",
        f"{_DPO} (older TRL)",
    ),
    "disable_dropout": Foreign("model.disable_dropout", True, source=_DPO),
    "precompute_ref_log_probs": Foreign(
        "model.reference", False, "--model.reference cached computes them once and keeps them on disk", _DPO
    ),
    "trust_remote_code": Foreign("model.trust_remote_code", True, source=_DPO),
    # trl.ModelConfig
    "model_name_or_path": Foreign("model.name", True, source=_MODEL),
    "model_revision": Foreign("model.revision", True, source=_MODEL),
    "dtype": Foreign("model.dtype", False, _DTYPE_NOTE, _MODEL),
    "torch_dtype": Foreign("model.dtype", False, _DTYPE_NOTE, f"{_MODEL} (older TRL)"),
    "use_peft": Foreign("lora.enabled", True, source=_MODEL),
    "lora_r": Foreign("lora.r", True, source=_MODEL),
    "lora_alpha": Foreign("lora.alpha", True, source=_MODEL),
    "lora_dropout": Foreign("lora.dropout", True, source=_MODEL),
    "lora_target_modules": Foreign("lora.target_modules", True, source=_MODEL),
    "load_in_4bit": Foreign("lora.load_in_4bit", True, source=_MODEL),
    "attn_implementation": Foreign("model.attn_implementation", True, source=_MODEL),
    # trl.ScriptArguments
    "dataset_name": Foreign("data.train", True, source=_SCRIPT),
    "dataset_config": Foreign("data.config_name", True, source=_SCRIPT),
    "dataset_train_split": Foreign("data.split", True, source=_SCRIPT),
    "dataset_test_split": Foreign("data.eval_split", True, source=_SCRIPT),
}
"""Option names of TRL (``DPOConfig``, ``ModelConfig``, ``ScriptArguments``) and transformers'
``TrainingArguments`` -> raco's counterpart. ``same`` entries are aliases (their meaning is exactly the
raco key's, every value raco accepts meaning the same there); the others are answered with the raco key
and what differs. The one table read by the YAML loader and by the flags (tests/training/test_config.py
checks every name against the installed TRL and transformers, and every key against raco's)."""

ENV_OVERRIDES = "RACO_OVERRIDES"
"""Environment variable of ``KEY=VALUE`` items (space-separated) applied after the YAML file and the
flags of every :func:`load_config`, e.g. ``RACO_OVERRIDES="train.max_steps=2"`` for a smoke run of
documented commands (tests/test_readme.py); each use is logged."""


def leaf_fields(cls: type | None = None, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """All settable ``(dotted_key, field, type)`` of ``cls`` (default: RunConfig)."""
    return _leaf_fields(cls or RunConfig, prefix)


def canonical_key(key: str) -> str:
    """The raco key of ``key``: itself, or the raco key of a TRL/transformers alias."""
    foreign = FOREIGN_NAMES.get(key)
    return foreign.key if foreign is not None and foreign.same else key


def raco_name(name: str, value: Any = None, objectives: list[str] | None = None) -> str | None:
    """For a TRL/transformers option ``name``: "raco calls it `key`: what differs" (None otherwise)."""
    foreign = FOREIGN_NAMES.get(name)
    if foreign is None:
        return None
    text = f"raco calls it `{foreign.key}`"
    if foreign.note:
        text += f": {foreign.note}"
    if foreign.key.startswith("objectives.NAME."):
        field_name = foreign.key.rsplit(".", 1)[1]
        shown = "VALUE" if value is None else str(value)
        text += (
            " (" + " ".join(f"--objectives.{o}.{field_name} {shown}" for o in objectives or ["NAME"]) + ")"
        )
    return text


def _alias_note(name: str, key: str, where: str = "") -> None:
    logger.warning("note: `%s`%s is read as `%s`, raco's name for it", name, where, key)


def _objective_names(tree: dict) -> list[str]:
    items = tree.get("objectives")
    if not isinstance(items, list):
        return []
    return [str(o["name"]) for o in items if isinstance(o, dict) and "name" in o]


def apply_override(tree: dict, key: str, value: Any) -> None:
    """Set dotted ``key`` in the nested YAML ``tree``; ``objectives.NAME.FIELD`` finds/creates by name.

    A TRL/transformers name (:data:`FOREIGN_NAMES`) sets its raco key when the meaning is the same (with
    a note), and is otherwise an error naming the raco key."""
    valid = [k for k, _, _ in leaf_fields()]
    if generic_key(RunConfig, key) not in valid and key in FOREIGN_NAMES:
        foreign = FOREIGN_NAMES[key]
        if not foreign.same:
            raise ConfigError(f"unknown option `--{key}`; {raco_name(key, value, _objective_names(tree))}")
        _alias_note(f"--{key}", f"--{foreign.key}")
        key = foreign.key
    set_dotted(tree, RunConfig, key, value)


def _read_foreign_names(tree: dict, origin: str = "") -> None:
    """TRL/transformers names in a YAML tree, at its top level or inside a section: aliases move to
    their raco key (with a note; giving both is an error), the others are errors naming the raco key."""
    hints = typing.get_type_hints(RunConfig)
    holders: list[tuple[str, dict, set[str]]] = [("", tree, {f.name for f in dataclasses.fields(RunConfig)})]
    for section, section_type in hints.items():
        if dataclasses.is_dataclass(section_type) and isinstance(tree.get(section), dict):
            own = {f.name for f in dataclasses.fields(section_type)}
            holders.append((f"{section}.", tree[section], own))
    for prefix, holder, own in holders:
        for name in [n for n in holder if n not in own and n in FOREIGN_NAMES]:
            foreign, where = FOREIGN_NAMES[name], f"{prefix}{name}"
            if not foreign.same:
                hint = raco_name(name, holder[name], _objective_names(tree))
                raise ConfigError(f"unknown key `{where}`{origin}; {hint}")
            *path, last = foreign.key.split(".")
            node = tree
            for part in path:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{part}: expected a mapping")
            if last in node:
                raise ConfigError(
                    f"`{where}` and `{foreign.key}` both given{origin}: `{where}` is raco's "
                    f"`{foreign.key}`; keep one"
                )
            node[last] = holder.pop(name)
            _alias_note(where, foreign.key, origin)


def environment_overrides() -> dict[str, str]:
    """The ``KEY=VALUE`` items of ``$RACO_OVERRIDES`` (:data:`ENV_OVERRIDES`), in order."""
    pairs: dict[str, str] = {}
    for item in shlex.split(os.environ.get(ENV_OVERRIDES, "")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip("-"):
            raise ConfigError(f"{ENV_OVERRIDES}: expected space-separated KEY=VALUE items, got {item!r}")
        pairs[key.lstrip("-")] = value
    return pairs


def config_notes(cfg: RunConfig) -> list[str]:
    """What a valid configuration does that its user may not expect (logged once by :func:`validate`)."""
    notes = []
    if not method_plan(cfg).uses_weights and any(o.weight is not None for o in cfg.objectives):
        weights = ", ".join(f"{o.name} {o.weight:g}" for o in cfg.objectives)
        notes.append(
            f"method.name: {cfg.method.name} ignores the objective weights ({weights}): its direction "
            "is the min-norm point of the gradients' convex hull; the weights only weigh "
            "eval/weighted_accuracy, a score "
            "they did not steer (use "
            f"{or_list([m for m in METHOD_NAMES if _plan_of(m).uses_weights])} for weighted training)"
        )
    if cfg.data.packing and cfg.model.attn_implementation in (None, "sdpa", "eager"):
        notes.append(
            f"data.packing with model.attn_implementation {cfg.model.attn_implementation or 'default'}: "
            "attention runs over the whole packed sequence of N tokens with a block-diagonal N × N mask "
            "(about 2B times the padded attention work and an N²-sized mask); the tokens saved are the "
            "linear layers' only; flash_attention_2/3 (per-row lengths) compute each row's attention "
            "alone (benchmarks/RESULTS.md, packing)"
        )
    return notes


def validate(cfg: RunConfig) -> RunConfig:
    """Cross-field checks that need more than one value (each field was checked when built); the
    :func:`config_notes` of a valid configuration are logged as warnings on the ``raco.config`` logger."""
    names = [o.name for o in cfg.objectives]
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives: duplicate names in {names}")
    given = [o.weight for o in cfg.objectives]
    weights = [w for w in given if w is not None]
    if 0 < len(weights) < len(given):
        missing = [o.name for o in cfg.objectives if o.weight is None]
        raise ConfigError(f"objectives.{missing[0]}.weight: give every objective a weight, or none")
    if weights and abs(sum(weights) - 1.0) > 1e-6:
        raise ConfigError(
            f"objectives.*.weight: weights {weights} must lie on the simplex "
            f"(sum to 1, got {sum(weights):.6g})"
        )
    betas = cfg.train.adam_betas
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"train.adam_betas: expected two numbers in [0, 1), got {betas}")
    if cfg.train.max_steps is not None and cfg.train.max_steps <= 0:
        raise ConfigError(f"train.max_steps: {cfg.train.max_steps} must be > 0 (none = run train.epochs)")
    if cfg.model.reference == "adapter" and not cfg.lora.enabled:
        raise ConfigError("model.reference: `adapter` needs lora.enabled: true; use `copy` or `cached`")
    if cfg.method.path == "scalarized" and not method_plan(cfg).scalarizable:
        raise ConfigError(f"method.path: `scalarized` is exact only for {or_list(_scalarizable())}")
    if cfg.model.pure_bf16 and cfg.model.dtype != "bfloat16":
        raise ConfigError(
            f"model.pure_bf16: bfloat16 weights need model.dtype: bfloat16 (got {cfg.model.dtype})"
        )
    if cfg.lora.load_in_4bit and not cfg.lora.enabled:
        raise ConfigError("lora.load_in_4bit: QLoRA needs lora.enabled: true")
    if not cfg.data.train and not cfg.data.separate:
        raise ConfigError("data.train: a training file or dataset name (or data.separate) is required")
    if cfg.data.train and cfg.data.separate:
        raise ConfigError("data.separate: give either data.train or data.separate, not both")
    if cfg.eval.generate_every:
        if not cfg.eval.objectives:
            raise ConfigError(
                "eval.generate_every: give eval.objectives to judge the answers by "
                "(e.g. --eval.objectives.concise.scorer length:unit=words)"
            )
        judged_objectives(cfg.eval.objectives, "eval.objectives")  # specs checked, torch-free
        cfg.eval.generation.settings()
    cfg.log.log_with = [name for name in cfg.log.log_with if name.lower() != "none"]
    _check_trackers(cfg.log.log_with)
    check_attn_implementation(cfg.model.attn_implementation)
    if cfg.data.packing and cfg.model.share_prompt:
        raise ConfigError("data.packing: not with model.share_prompt (set one of them to false)")
    if cfg.data.max_prompt_length >= cfg.data.max_length:
        raise ConfigError("data.max_prompt_length: must be smaller than data.max_length")
    for note in config_notes(cfg):
        logger.warning("note: %s", note)
    return cfg


def _unlisted_objective(tree: dict, listed: list[str], keys: list[str]) -> str | None:
    """When the YAML file lists objectives and a flag named another one (a new objective is then added,
    e.g. by the typo ``--objectives.helpfull.weight``): the message naming it and the listed ones."""
    if not listed:
        return None
    added = [name for name in _objective_names(tree) if name not in listed]
    if not added:
        return None
    name = added[0]
    flag = next((k for k in keys if k.startswith(f"objectives.{name}.")), f"objectives.{name}.weight")
    close = difflib.get_close_matches(name, listed, n=1, cutoff=0.6)
    field_name = flag.split(".")[2]
    hint = f"; did you mean `{close[0]}` (--objectives.{close[0]}.{field_name})?" if close else "."
    return (
        f"--{flag}: `{name}` is not one of the config's objectives ({', '.join(listed)}){hint} A flag "
        "naming an objective the config does not list adds one (the objectives must be the data's)"
    )


TRAJECTORY_FREE = ("output_dir", "overwrite", "log.")
"""Keys (or prefixes) that do not change what a run computes."""


def differences(saved: RunConfig | dict, cfg: RunConfig) -> list[str]:
    """``key: saved -> new`` for every option that changes what a run computes and differs between
    ``saved`` (e.g. the ``config.yaml`` of an existing run directory) and ``cfg``: for saying why
    ``--resume`` would continue *another* run than the one asked for."""
    old = to_dict(build(RunConfig, copy.deepcopy(saved)) if isinstance(saved, dict) else saved)
    new = to_dict(cfg)

    def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(tree, dict):
            return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        if isinstance(tree, list) and tree and all(isinstance(o, dict) and "name" in o for o in tree):
            return {k: v for o in tree for k, v in flat(o, f"{prefix}{o['name']}.").items()}
        return {prefix.rstrip("."): tree}

    before, after = flat(old), flat(new)
    keys = [k for k in dict.fromkeys([*before, *after]) if not k.startswith(TRAJECTORY_FREE)]
    return [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys if before.get(k) != after.get(k)]


def check_attn_implementation(name: str | None) -> None:
    """A flash-attention ``model.attn_implementation`` needs its package installed: a ``ConfigError``
    naming the option and the package at start, instead of transformers' traceback at model load."""
    module, package = ATTN_PACKAGES.get(name or "", (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"model.attn_implementation: {name} needs the `{package}` package (module `{module}`), which is "
            "not installed; install it (CUDA GPUs only) or use sdpa (the default) or eager"
        )


def _check_trackers(names: list[str]) -> None:
    """Tracker names must be accelerate's, and their package installed (checked before any model load)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            hint = suggest(name, sorted(LOGGER_TYPE_TO_CLASS))
            raise ConfigError(f"log.log_with: unknown tracker {name!r}{hint}")
        modules = ("tensorboard", "tensorboardX") if name == "tensorboard" else (name,)
        if all(importlib.util.find_spec(m) is None for m in modules):
            raise ConfigError(f"log.log_with: tracker {name!r} needs the `{modules[0]}` package installed")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML ``path`` (optional), apply dotted ``overrides`` (then ``$RACO_OVERRIDES``) and return a
    validated RunConfig."""
    tree: dict = {}
    source = ""
    if path is not None:
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        source = f" in {path}"
        _read_foreign_names(tree, source)  # before the paths: a foreign name may hold one
        resolve_data_paths(tree, Path(path).parent)
    return config_from_tree(tree, overrides, source=source)


def config_from_tree(
    tree: dict, overrides: dict[str, Any] | None = None, *, environment: bool = True, source: str = ""
) -> RunConfig:
    """The one way a nested mapping becomes a validated RunConfig (YAML files, ``raco.train(dict)``,
    resumed runs): TRL/transformers names read (notes say where, ``source``), dotted ``overrides``
    applied, then ``$RACO_OVERRIDES`` when ``environment``. ``tree`` is not modified."""
    tree = copy.deepcopy(tree)
    _read_foreign_names(tree, source)
    listed = _objective_names(tree)
    overrides = dict(overrides or {})
    given: dict[str, str] = {}
    for key in overrides:
        other = given.setdefault(canonical_key(key), key)
        if other != key:
            raise ConfigError(f"--{other} and --{key} both set `{canonical_key(key)}`; give one")
    for key, value in overrides.items():
        apply_override(tree, key, value)
    from_environment = environment_overrides() if environment else {}
    if from_environment:
        items = " ".join(f"{k}={v}" for k, v in from_environment.items())
        logger.warning("note: %s sets %s", ENV_OVERRIDES, items)
    for key, value in from_environment.items():
        apply_override(tree, key, value)
    try:
        return validate(build(RunConfig, tree))
    except ConfigError as err:
        unlisted = _unlisted_objective(tree, listed, [*overrides, *from_environment])
        if unlisted is None:
            raise
        raise ConfigError(f"{unlisted}; with it: {err}") from None


def resolve_data_paths(tree: dict, base: Path) -> None:
    """Data paths in a YAML file are taken from the current directory, or else, when they exist only
    there, from the YAML file's own folder (so `raco train --config path/to/x.yaml` works anywhere).
    Hugging Face dataset names exist in neither place and are left alone."""
    data = tree.get("data")
    if not isinstance(data, dict):
        return
    holders = [(data, "train"), (data, "eval")]
    separate = data.get("separate")
    if isinstance(separate, dict):
        holders += [(part, "path_or_name") for part in separate.values() if isinstance(part, dict)]
    for holder, key in holders:
        value = holder.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and not Path(value).exists():
            candidate = base / value
            if candidate.exists():
                holder[key] = str(candidate.resolve())


def from_dict(tree: dict) -> RunConfig:
    """A validated RunConfig from a nested mapping (the inverse of :func:`to_dict`); TRL/transformers
    names are read as in a YAML file; ``$RACO_OVERRIDES`` is not applied."""
    return config_from_tree(tree, environment=False)


def to_dict(cfg: RunConfig) -> dict:
    """Plain nested mapping of ``cfg`` (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: Path) -> None:
    """Write ``cfg`` as YAML, atomically."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))
