"""Scorers that read the text alone: ``length``, ``python`` (your function) and ``rouge``.

See :mod:`raco.eval.scorers` for specs, the :class:`~raco.eval.scorers.Scorer` interface and errors.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raco.eval.scorers import Scorer, ScorerError, ScorerSpec, require

BUILTIN_TOKENIZERS = ("gpt2", "smollm2-135m-instruct")  # offline, from raco.models.offline


def one_paragraph(err: BaseException) -> str:
    """``Type: message`` on one line."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class LengthScorer(Scorer):
    """Length of the response in ``words`` (whitespace-separated), ``characters``, or ``tokens`` of a
    tokenizer (without special tokens). Whether shorter is better is the objective's direction."""

    def __init__(self, spec: ScorerSpec, *, tokenizer: Any = None, **context: Any) -> None:
        super().__init__(spec, **context)
        self.unit = spec.get("unit")
        self.tokenizer: Any = None
        name = spec.get("tokenizer")
        if name and self.unit != "tokens":
            raise ScorerError(f"scorer {self.name}: `tokenizer` counts only with unit=tokens")
        if self.unit == "tokens":
            self.tokenizer = load_tokenizer(name) if name else tokenizer
            if self.tokenizer is None:
                raise ScorerError(
                    f"scorer {self.name}: counting tokens needs a tokenizer: give `tokenizer=ID_OR_FOLDER` "
                    f"(or one of {', '.join(BUILTIN_TOKENIZERS)}), or score where the policy's is known"
                )

    def score(self, prompts: list[str], responses: list[str], references: list[str] | None) -> list[int]:
        """The length of each response."""
        if self.unit == "words":
            return [len(r.split()) for r in responses]
        if self.unit == "characters":
            return [len(r) for r in responses]
        ids = self.tokenizer(responses, add_special_tokens=False)["input_ids"]
        return [len(row) for row in ids]


def load_tokenizer(name: str) -> Any:
    """A tokenizer by Hugging Face id or folder, or an offline built-in (:data:`BUILTIN_TOKENIZERS`)."""
    try:
        if name == "gpt2":
            from raco.models.offline import gpt2_tokenizer

            return gpt2_tokenizer()
        if name == "smollm2-135m-instruct":
            from raco.models.offline import smollm2_tokenizer

            return smollm2_tokenizer()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, ImportError, KeyError, RuntimeError) as err:
        raise ScorerError(f"scorer length: cannot load tokenizer {name!r}: {one_paragraph(err)}") from err


class PythonScorer(Scorer):
    """Your own function, given as ``module:function`` or ``path/to/file.py:function``, called with the
    batch: ``f(prompts, responses, references)`` (or ``f(prompts, responses)`` if it takes two
    arguments); it returns one number per row. ``references`` is None when there are none."""

    def __init__(self, spec: ScorerSpec, **context: Any) -> None:
        super().__init__(spec, **context)
        self.function = load_function(spec.get("function"))
        self.takes_references = _takes_three(self.function)

    def score(self, prompts: list[str], responses: list[str], references: list[str] | None) -> list[Any]:
        """The function's output for the batch (a failure inside it is a :class:`ScorerError`)."""
        args = (prompts, responses, references) if self.takes_references else (prompts, responses)
        try:
            return self.function(*args)
        except Exception as err:
            raise ScorerError(
                f"scorer {self.name} failed on a batch of {len(prompts)} rows: {one_paragraph(err)}"
            ) from err


def load_function(target: str) -> Callable[..., Any]:
    """The callable named ``module:function`` or ``path/to/file.py:function``."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise ScorerError(
            f"scorer python: function={target!r} is not `module:function` or `file.py:function`"
        )
    try:
        module = _import_file(Path(where)) if where.endswith(".py") else importlib.import_module(where)
    except ScorerError:
        raise
    except Exception as err:
        raise ScorerError(f"scorer python: cannot import {where!r}: {one_paragraph(err)}") from err
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        from raco.config_tree import suggest

        raise ScorerError(f"scorer python: {where!r} has no {attr!r}{suggest(attr, public)}")
    function = getattr(module, attr)
    if not callable(function):
        raise ScorerError(f"scorer python: {target!r} is a {type(function).__name__}, not a function")
    return function


def _import_file(path: Path) -> Any:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ScorerError(f"scorer python: the file {path} does not exist")
    # a name unique to the path, so two files named scores.py do not replace each other
    name = "raco_user_scorer_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScorerError(f"scorer python: cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _takes_three(function: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind([], [], None)
        return True
    except TypeError:
        try:
            signature.bind([], [])
        except TypeError:
            raise ScorerError(
                f"scorer python: {function.__qualname__}{signature} must take "
                "(prompts, responses[, references])"
            ) from None
        return False


class RougeScorer(Scorer):
    """ROUGE (``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum``) of the response against the reference
    answer, as F-measure, precision or recall in [0, 1], by Google's ``rouge-score`` package. A row
    without a reference (None) is reported as not scored."""

    needs_reference = True

    def __init__(self, spec: ScorerSpec, **context: Any) -> None:
        super().__init__(spec, **context)
        rouge = require("rouge_score.rouge_scorer", "rouge")
        self.type, self.measure = spec.get("type"), spec.get("measure")
        self.rouge = rouge.RougeScorer([self.type], use_stemmer=spec.get("stemmer"))

    def score(self, prompts: list[str], responses: list[str], references: list[str] | None) -> list[Any]:
        """ROUGE of each (reference, response) pair."""
        assert references is not None  # run() checks
        return [
            None if ref is None else getattr(self.rouge.score(ref, resp)[self.type], self.measure)
            for ref, resp in zip(references, responses, strict=True)
        ]
