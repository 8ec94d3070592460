"""MGDA: the min-norm point of the convex hull of the gradients, and the Pareto-criticality measure."""

from __future__ import annotations

import numpy as np
import torch

from raco.aggregators._checks import check_gram, check_weights, to_output
from raco.aggregators._simplex import SimplexSolution, solve
from raco.aggregators._types import Aggregation


def _min_norm_point(h: np.ndarray) -> SimplexSolution:
    return solve(np.zeros(h.shape[0]), h, 1.0)


def mgda(gram: torch.Tensor, weights: torch.Tensor | None = None) -> Aggregation:
    """MGDA (Désidéri 2012; Sener & Koltun 2018): a = p* = argmin_{p∈Δ} pᵀHp.

    The user weights are ignored (validated when given). When the minimiser is not unique (e.g.
    identical or colinear gradients) one minimiser is returned; when 0 lies in the convex hull
    (e.g. exactly opposite gradients) p* gives d = 0, which is correct: the point is Pareto-critical.
    ``dual_gap`` holds the certified optimality gap of ‖Σ p_i g_i‖.
    """
    h = check_gram(gram)
    if weights is not None:
        check_weights(weights, h.shape[0])
    sol = _min_norm_point(h)
    return Aggregation(coefficients=to_output(sol.p, gram), dual_gap=sol.gap)


def min_norm(gram: torch.Tensor) -> float:
    """Pareto-criticality measure M = min_{p∈Δ} ‖Σ p_i g_i‖ = sqrt(p*ᵀHp*) (0 exactly at
    Pareto-critical points; RACO paper, Thm 3.1). Certified to 1e-9 relative."""
    return _min_norm_point(check_gram(gram)).norm
