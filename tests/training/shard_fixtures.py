"""Shared by the sharded-work tests and their torchrun workers: the toy rows and a tiny-random
reference policy built the same way in every process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from toy_data import tiny_tree, write_toy

from raco.config import from_dict
from raco.data.collate import PairCollator
from raco.models.loading import load_tokenizer, prepare_base
from raco.models.reference import FrozenReference
from raco.training.inputs import prepare_data

BATCH_SIZES = (8, 7, 40)  # 12 batches; 14 (the last one short); 3 (one process has 1 batch, one 2)


def toy_reference(folder: Path) -> tuple[FrozenReference, list[dict], Callable[[Sequence[dict]], dict]]:
    """(a frozen tiny-random reference, the toy training pairs, their collator) — the same in every
    process (files written per process under ``folder``, the model from its seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = write_toy(folder / "train.jsonl", 96, 0, ties=0.3), write_toy(folder / "eval.jsonl", 16, 1)
    cfg = from_dict(tiny_tree(*files, folder / "run"))
    tokenizer = load_tokenizer(cfg.model)
    data = prepare_data(cfg, tokenizer)
    model = prepare_base(cfg.model, cfg.lora, len(tokenizer)).eval().requires_grad_(False)
    return FrozenReference(model), data.train, PairCollator(tokenizer.pad_token_id)
