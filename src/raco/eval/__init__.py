"""Evaluation after training: scorers (one float per prompt/response) and batched generation.

``raco.eval.scorers`` (specs, the registry, results, objectives) imports neither torch nor
transformers; scorers load their models when built, and generation imports transformers on use.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raco.eval.generate import GenerationConfig, TransformersBackend, generate, make_backend
    from raco.eval.scorers import (
        SCORERS,
        BadScore,
        ObjectiveScorer,
        Scorer,
        ScorerError,
        ScorerSpec,
        Scores,
        check_spec,
        make_scorer,
    )

_LAZY = {
    **dict.fromkeys(
        ("SCORERS", "BadScore", "ObjectiveScorer", "Scorer", "ScorerError", "Scores", "ScorerSpec"),
        "raco.eval.scorers",
    ),
    "check_spec": "raco.eval.scorers",
    "make_scorer": "raco.eval.scorers",
    **dict.fromkeys(
        ("GenerationConfig", "TransformersBackend", "generate", "make_backend"), "raco.eval.generate"
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raco.eval' has no attribute {name!r}")


__all__ = [
    "SCORERS",
    "BadScore",
    "GenerationConfig",
    "ObjectiveScorer",
    "Scorer",
    "ScorerError",
    "ScorerSpec",
    "Scores",
    "TransformersBackend",
    "check_spec",
    "generate",
    "make_backend",
    "make_scorer",
]
