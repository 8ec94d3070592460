"""Per-objective gradients (fused one-backward and plain k-backward paths), Gram matrices,
gradient accumulation and explicit distributed all-reduce."""

from raco.gradients.capture import FusedCapture, FusedPathUnsupported
from raco.gradients.engine import GradientEngine, resolve_aggregator
from raco.gradients.report import MicroBatchStats, NonFiniteGradientError, StepReport, pareto_measure
from raco.gradients.store import gram_matrix

__all__ = [
    "FusedCapture",
    "FusedPathUnsupported",
    "GradientEngine",
    "MicroBatchStats",
    "NonFiniteGradientError",
    "StepReport",
    "gram_matrix",
    "pareto_measure",
    "resolve_aggregator",
]
