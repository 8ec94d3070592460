"""Generation judged during training (``eval.generate_every``): the policy answers the held-out prompts
and each ``eval.objectives`` scorer judges the answers, logged as ``eval/<objective>/score`` (the mean
over the prompts it could score) next to the held-out preference metrics — the same generation and
scorers as ``raco eval`` (raco.eval), built once before training starts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raco.config import RunConfig
from raco.config_tree import ConfigError
from raco.data.schema import Text, prompt_text
from raco.eval.config import judged_objectives
from raco.eval.generate import GenerationConfig, generate
from raco.eval.scorers import Scorer, make_scorer
from raco.metric_keys import eval_key, objective_key


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
        """``eval/<objective>/score`` of ``model``'s answers (greedy or seeded: repeatable)."""
        was_training = model.training
        model.eval()
        try:
            with autocast():
                answers = generate(model, tokenizer, self.prompts, self.settings, progress=False)
        finally:
            model.train(was_training)
        texts = [prompt_text(p) for p in self.prompts]
        return {
            eval_key(objective_key(name, "score")): scorer.run(texts, answers).mean()
            for name, scorer in self.scorers.items()
        }
