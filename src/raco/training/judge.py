"""Generation judged during training (``eval.generate_every``): the policy answers the held-out prompts
and each ``eval.objectives`` scorer judges the answers, logged as ``eval/<objective>/score`` (the mean
over the prompts it could score) next to the held-out preference metrics — the same generation and
scorers as ``raco eval`` (raco.eval), built once before training starts.

Under several processes the generation batches (those one process would make: ``batch_plan``) are
shared out, batch b to process b mod W, and the answers are all-gathered; every process then scores all
of them. Each batch is generated exactly as one process generates it (same prompts, same padding, each
prompt's sampling seeded by its own index), so the answers, and every score, equal the 1-process ones.
Scoring is not split: a scorer's result may depend on how its inputs are batched, and it costs little
next to generation. Under a sharded model (FSDP2) the processes generate in lockstep (transformers'
``synced_gpus``, and a discarded repeat where a share is one batch short), since each forward pass is
a collective there."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raco.config import RunConfig
from raco.config_tree import ConfigError
from raco.data.schema import Text, prompt_text
from raco.eval.config import judged_objectives
from raco.eval.generate import GenerationConfig, TransformersBackend, batch_plan, encode_prompts
from raco.eval.scorers import Scorer, make_scorer
from raco.metric_keys import eval_key, objective_key
from raco.shard import gather_objects, is_sharded, rank_and_world, rounds


@dataclass
class GenerationJudge:
    """Held-out prompts, the scorers of ``eval.objectives`` and the generation settings."""

    prompts: list[Text]
    scorers: dict[str, Scorer]
    settings: GenerationConfig

    @classmethod
    def build(cls, cfg: RunConfig, eval_prompts: list[Text], tokenizer: Any) -> GenerationJudge | None:
        """None when ``eval.generate_every`` is 0; a ``ConfigError`` when there are no held-out prompts."""
        if not cfg.eval.generate_every:
            return None
        if not eval_prompts:
            raise ConfigError(
                "eval.generate_every: the run has no held-out prompts to answer; give data.eval (or "
                "data.eval_fraction > 0)"
            )
        judged = judged_objectives(cfg.eval.objectives, "eval.objectives")
        scorers = {name: make_scorer(j.scorer, tokenizer=tokenizer) for name, j in judged.items()}
        return cls(eval_prompts[: cfg.eval.max_prompts], scorers, cfg.eval.generation.settings())

    def metrics(
        self, model: Any, tokenizer: Any, autocast: Callable[[], contextlib.AbstractContextManager]
    ) -> dict[str, float]:
        """``eval/<objective>/score`` of ``model``'s answers (greedy or seeded: repeatable); call on
        every process (see the module docstring)."""
        was_training = model.training
        model.eval()
        try:
            with autocast():
                answers = self.answers(model, tokenizer)
        finally:
            model.train(was_training)
        texts = [prompt_text(p) for p in self.prompts]
        return {
            eval_key(objective_key(name, "score")): scorer.run(texts, answers).mean()
            for name, scorer in self.scorers.items()
        }

    def answers(self, model: Any, tokenizer: Any) -> list[str]:
        """``model``'s answer to each prompt, in order: this process generates its share of the batches,
        every process gets all answers."""
        rank, world = rank_and_world()
        encoded = encode_prompts(tokenizer, self.prompts, self.settings.chat_template)
        plan = batch_plan(encoded, self.settings.batch_size)
        mine = plan[rank::world]
        synced = world > 1 and is_sharded(model)
        extra = [plan[0]] * (rounds(len(plan), world) - len(mine)) if synced and plan else []
        backend = TransformersBackend(model, tokenizer)
        made = backend.generate_batches(encoded, mine + extra, self.settings, progress=False, synced=synced)
        merged: dict[int, str] = {}
        for share in gather_objects({i: made[i] for rows in mine for i in rows}):
            merged.update(share)
        return [merged[i] for i in range(len(encoded))]
