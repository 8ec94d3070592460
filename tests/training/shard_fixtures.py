"""Shared by the sharded-work tests and their torchrun workers: the toy rows and a tiny-random model
built the same way in every process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toy_data import tiny_tree, write_toy

from raco.config import RunConfig, from_dict
from raco.data.collate import PairCollator
from raco.eval.generate import GenerationConfig
from raco.eval.scorers import make_scorer
from raco.models.loading import load_tokenizer, prepare_base
from raco.models.reference import FrozenReference
from raco.training.inputs import PreparedData, prepare_data
from raco.training.judge import GenerationJudge
from raco.training.session import objective_specs

TABLE_ROWS = 40  # the training rows the table tests use
# 5 batches (one process has 2, one 3); 6 (the last one short); 1 (one process has none)
BATCH_SIZES = (8, 7, 40)
EVAL_BATCH = 7  # 16 held-out rows: 3 batches (7, 7, 2): one process has 2, one 1
# sampled (each prompt's seed is its index), 3 prompts a batch: the 7 distinct prompts make 3 batches
GENERATION = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.5, seed=3, batch_size=3)


@dataclass
class Toy:
    """A tiny-random model (eval mode, frozen) and the toy data, as every process builds them."""

    cfg: RunConfig
    tokenizer: Any
    data: PreparedData
    model: Any
    collate: PairCollator

    @property
    def reference(self) -> FrozenReference:
        return FrozenReference(self.model)

    def judge(self) -> GenerationJudge:
        scorer = make_scorer("length:unit=characters")
        return GenerationJudge(self.data.eval_prompts, {"chars": scorer}, GENERATION)

    def specs(self):
        return objective_specs(self.cfg)


def toy(folder: Path) -> Toy:
    """The toy files (written under ``folder``: one of its own per process), their tokenised pairs and a
    tiny-random model."""
    folder.mkdir(parents=True, exist_ok=True)
    files = (
        write_toy(folder / "train.jsonl", 96, 0, ties=0.3),
        write_toy(folder / "eval.jsonl", 16, 1, ties=0.3),
    )
    cfg = from_dict(tiny_tree(*files, folder / "run"))
    tokenizer = load_tokenizer(cfg.model)
    data = prepare_data(cfg, tokenizer)
    model = prepare_base(cfg.model, cfg.lora, len(tokenizer)).eval().requires_grad_(False)
    return Toy(cfg, tokenizer, data, model, PairCollator(tokenizer.pad_token_id))
