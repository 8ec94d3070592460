"""CAGrad with a weighted anchor, and its dual (shared with RACO)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from raco.aggregators._checks import check_c, check_gram, check_weights, to_output
from raco.aggregators._simplex import SimplexSolution, is_zero_norm, solve, spread
from raco.aggregators._types import Aggregation

RESCALE_FACTORS: dict[str, Callable[[float], float]] = {
    "none": lambda c: 1.0,
    "1/(1+c^2)": lambda c: 1.0 / (1.0 + c * c),
    "1/(1+c)": lambda c: 1.0 / (1.0 + c),
}
_RESCALE_ALIASES: dict[object, str] = {
    None: "none",
    0: "none",
    1: "1/(1+c^2)",
    2: "1/(1+c)",
    "1/(1+c²)": "1/(1+c^2)",
}


def cagrad_dual(h: np.ndarray, w: np.ndarray, c: float) -> tuple[float, SimplexSolution | None]:
    """Solve the CAGrad dual p = argmin_{p∈Δ} pᵀHw + s·sqrt(pᵀHp) with s = c·sqrt(wᵀHw).

    Returns (s, solution); the solution is None when s = 0: c = 0, or g_0 = Σ w_i g_i vanishes by the
    zero rule (``is_zero_norm``), where the correction c‖g_0‖·G_p/‖G_p‖ is zero and the dual meaningless.
    """
    anchor2 = max(float(w @ h @ w), 0.0)
    if c <= 0.0 or is_zero_norm(anchor2, spread(w, h)):
        return 0.0, None
    s = c * math.sqrt(anchor2)
    return s, solve(h @ w, h, s)


def correction_coefficients(w: np.ndarray, p: np.ndarray, h: np.ndarray, s: float) -> np.ndarray | None:
    """a = w + (s / sqrt(pᵀHp))·p, i.e. d = g_0 + c‖g_0‖·G_p/‖G_p‖; None when s = 0 or when the zero
    rule calls ‖G_p‖ zero (G_p vanishes to rounding: its direction would be noise).

    Otherwise ‖G_p‖ > sqrt(ZERO_NORM_RTOL)·σ(p), σ(p) = Σ_i p_i‖g_i‖, so the coefficients are bounded:
    |a_i − w_i| = s·p_i/‖G_p‖ ≤ c‖g_0‖·p_i / (sqrt(ZERO_NORM_RTOL)·σ(p))  (docs/aggregators.md).
    """
    norm2 = float(p @ h @ p)
    if s <= 0.0 or is_zero_norm(norm2, spread(p, h)):
        return None
    return w + (s / math.sqrt(norm2)) * p


def _rescale_factor(rescale: object, c: float) -> float:
    key = _RESCALE_ALIASES.get(rescale, rescale) if not isinstance(rescale, bool) else rescale
    if not isinstance(key, str) or key not in RESCALE_FACTORS:
        raise ValueError(f"rescale must be one of {sorted(RESCALE_FACTORS)} (or 0/1/2), got {rescale!r}")
    return RESCALE_FACTORS[key](c)


def cagrad(
    gram: torch.Tensor, weights: torch.Tensor, c: float = 0.4, rescale: object = "none"
) -> Aggregation:
    """CAGrad (Liu et al., NeurIPS 2021, arXiv 2110.14048) anchored at g_0 = Σ w_i g_i:

        s = c‖g_0‖,  p = argmin_{p∈Δ} pᵀHw + s·sqrt(pᵀHp),  a = w + (s/sqrt(pᵀHp))·p,

    so ‖d − g_0‖ = c‖g_0‖. ``rescale`` divides d as the original code's option does: "none"
    (default, also 0), "1/(1+c^2)" (1) or "1/(1+c)" (2). With w = 1/k this is the original CAGrad.
    Degenerate cases (c = 0, or g_0 or G_p vanishing by the zero rule): a = w, ``degenerate`` set.
    """
    h = check_gram(gram)
    w = check_weights(weights, h.shape[0])
    c = check_c(c)
    factor = _rescale_factor(rescale, c)
    s, sol = cagrad_dual(h, w, c)
    a = None if sol is None else correction_coefficients(w, sol.p, h, s)
    coefficients = (w if a is None else a) * factor
    return Aggregation(
        coefficients=to_output(coefficients, gram),
        dual=None if sol is None else to_output(sol.p, gram),
        degenerate=a is None,
        dual_gap=None if sol is None else sol.gap,
    )
