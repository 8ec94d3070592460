"""Aggregators: combine k per-objective gradients from their Gram matrix alone.

Every method is a pure function ``f(gram, weights, **options) -> Aggregation``; the update direction
is d = Σ_i a_i g_i with a = ``Aggregation.coefficients``. All solving happens in float64.
"""

from collections.abc import Callable

from raco.aggregators._simplex import DualSolverError
from raco.aggregators._types import Aggregation
from raco.aggregators.cagrad import cagrad
from raco.aggregators.mgda import mgda, min_norm
from raco.aggregators.raco import raco
from raco.aggregators.weighted_sum import weighted_sum

AGGREGATORS: dict[str, Callable[..., Aggregation]] = {
    "raco": raco,
    "cagrad": cagrad,
    "mgda": mgda,
    "weighted_sum": weighted_sum,
}
"""Name -> function; the names, options and properties are declared torch-free in
:data:`raco.registry.AGGREGATORS` (tests/test_registries.py keeps the two equal)."""

__all__ = [
    "AGGREGATORS",
    "Aggregation",
    "DualSolverError",
    "cagrad",
    "mgda",
    "min_norm",
    "raco",
    "weighted_sum",
]
