"""Training inputs: load and split the preference data, check objectives, tokenise, order batches.

Data order is a pure function of (seed, epoch): every epoch is a seeded permutation of the training
rows cut into global micro-batches of ``batch_size × processes`` pairs (a short tail is dropped), and
optimizer step ``s`` always reads micro-batches ``[j·accum, (j+1)·accum)`` of epoch ``s // steps``
(``j = s mod steps``). So the data position of a checkpoint is its step, and a resumed run reads
exactly the batches the uninterrupted run would have read.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from raco.config import ConfigError, ObjectiveConfig, RunConfig
from raco.config_tree import suggest
from raco.data.collate import PairCollator
from raco.data.collect import finalize
from raco.data.inspect import sign_counts
from raco.data.load import load_preference_data
from raco.data.schema import PreferenceDataset, PreferenceRow, Text, distinct_prompts, reindexed
from raco.data.spec import DataSpec, spec_from_config
from raco.data.tokenize import TokenizedPair, tokenize_dataset


@dataclass
class PreparedData:
    """Tokenised train/eval pairs (``row_index`` = position in its list) and data statistics."""

    objectives: tuple[str, ...]
    train: list[TokenizedPair]
    eval: list[TokenizedPair]
    stats: dict = field(default_factory=dict)
    eval_prompts: list[Text] = field(default_factory=list)  # the held-out rows' distinct prompts


def check_objectives(cfg: RunConfig, available: tuple[str, ...]) -> None:
    """Config objectives must be exactly the data's; none given → all of them, uniform weights."""
    if not cfg.objectives:
        cfg.objectives = [ObjectiveConfig(name=name) for name in available]
        return
    names = [o.name for o in cfg.objectives]
    for name in names:
        if name not in available:
            hint = suggest(name, list(available))
            raise ConfigError(
                f"objectives.{name}: not in the data, whose objectives are {list(available)}{hint}"
            )
    missing = [name for name in available if name not in names]
    if missing:
        raise ConfigError(
            f"objectives: the data also has {missing}; list every objective of the data with a weight "
            "(weight 0 to ignore one)"
        )


def _split_holdout(dataset: PreferenceDataset, fraction: float, seed: int) -> tuple[list, list]:
    rows = list(dataset.rows)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = round(fraction * len(rows))
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def load_rows(
    cfg: RunConfig,
) -> tuple[tuple[str, ...], list[PreferenceRow], list[PreferenceRow], dict]:
    """Train and eval rows (objectives ordered as in the config) and loading statistics."""
    loaded = load_preference_data(spec_from_config(cfg.data))
    check_objectives(cfg, loaded.objectives)
    names = tuple(o.name for o in cfg.objectives)
    # order the signs as the config lists the objectives (directions were applied when loading)
    train = finalize(loaded, DataSpec(path_or_name=loaded.source, objectives=names))
    if cfg.data.eval or cfg.data.eval_split:
        evaluation = load_preference_data(
            spec_from_config(cfg.data, path=cfg.data.eval, split=cfg.data.eval_split, objectives=names)
        )
        train_rows, eval_rows = list(train.rows), list(evaluation.rows)
        skipped = {"train": train.skipped, "eval": evaluation.skipped}
    else:
        train_rows, eval_rows = _split_holdout(train, cfg.data.eval_fraction, cfg.train.seed)
        skipped = {"train": train.skipped}
    if cfg.data.max_eval_rows is not None:
        eval_rows = eval_rows[: cfg.data.max_eval_rows]
    stats = {"source": train.source, "skipped": skipped}
    return names, reindexed(train_rows), reindexed(eval_rows), stats


def prepare_data(cfg: RunConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Load, split and tokenise the run's data; objectives are checked against the config."""
    names, train_rows, eval_rows, stats = load_rows(cfg)
    train, train_cut = tokenize_dataset(
        train_rows, tokenizer, cfg.data.max_length, cfg.data.max_prompt_length
    )
    evaluation, eval_cut = tokenize_dataset(
        eval_rows, tokenizer, cfg.data.max_length, cfg.data.max_prompt_length
    )
    stats.update(
        objectives=list(names),
        train_rows=len(train),
        eval_rows=len(evaluation),
        train_signs=sign_counts((pair["signs"] for pair in train), names),
        truncation={"train": train_cut.as_dict(), "eval": eval_cut.as_dict()},
    )
    return PreparedData(names, train, evaluation, stats, distinct_prompts(eval_rows))


@dataclass(frozen=True)
class StepPlan:
    """How optimizer steps map onto the data."""

    micro_batch: int  # pairs per process per micro-batch
    processes: int
    accum: int
    steps_per_epoch: int
    total_steps: int

    @property
    def global_micro(self) -> int:
        return self.micro_batch * self.processes


def make_plan(cfg: RunConfig, n_rows: int, processes: int) -> StepPlan:
    """Steps per epoch and in total; an error if not even one optimizer step fits in the data."""
    t = cfg.train
    micro_per_epoch = n_rows // (t.batch_size * processes)
    steps_per_epoch = micro_per_epoch // t.grad_accum
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size: {n_rows} training rows are fewer than one optimizer step needs "
            f"({t.batch_size} pairs x {t.grad_accum} accumulation x {processes} processes)"
        )
    total = t.max_steps if t.max_steps is not None else max(1, round(t.epochs * steps_per_epoch))
    return StepPlan(t.batch_size, processes, t.grad_accum, steps_per_epoch, total)


@functools.lru_cache(maxsize=2)
def epoch_order(n_rows: int, epoch: int, seed: int) -> tuple[int, ...]:
    """The seeded permutation of rows for ``epoch`` (a pure function: cached, not redrawn every step)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(n_rows, generator=generator).tolist())


def step_micro_batches(
    pairs: list[TokenizedPair], plan: StepPlan, step: int, seed: int, rank: int
) -> list[list[TokenizedPair]]:
    """This process's micro-batches (lists of pairs) for optimizer step ``step`` (0-based)."""
    epoch, j = divmod(step, plan.steps_per_epoch)
    order = epoch_order(len(pairs), epoch, seed)
    out = []
    for m in range(j * plan.accum, (j + 1) * plan.accum):
        start = m * plan.global_micro + rank * plan.micro_batch
        out.append([pairs[i] for i in order[start : start + plan.micro_batch]])
    return out


def eval_batches(pairs: list[TokenizedPair], collator: PairCollator, batch_size: int) -> Iterator[dict]:
    """Collated evaluation batches in row order."""
    for start in range(0, len(pairs), batch_size):
        yield collator(pairs[start : start + batch_size])
