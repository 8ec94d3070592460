"""RACO: CAGrad-Clip, the conflict correction with its dual clipped by the user's weights."""

from __future__ import annotations

import numpy as np
import torch

from raco.aggregators._checks import check_c, check_gram, check_weights, to_output
from raco.aggregators._types import Aggregation
from raco.aggregators.cagrad import cagrad_dual, correction_coefficients

CLIP_ATOL = 1e-12  # p_i above w_i by less than this is rounding, not an active clip


def _changes_direction(p: np.ndarray, clipped: np.ndarray) -> bool:
    """Whether p̃ = min(p, w) is not λ·p for any λ > 0: the ratios p̃_i / p_i over p's support differ
    (p̃ = 0, disjoint supports, counts as a change: the update falls back to a = w)."""
    if not (p - clipped > CLIP_ATOL).any():
        return False
    support = p > CLIP_ATOL
    ratios = clipped[support] / p[support]
    return bool(ratios.max() <= CLIP_ATOL or ratios.max() - ratios.min() > 1e-9 * ratios.max())


def raco(gram: torch.Tensor, weights: torch.Tensor, c: float = 0.4) -> Aggregation:
    """RACO's clipped CAGrad (Chen et al., ICML 2026, arXiv 2602.02495, Alg. 1):

        s = c‖g_0‖,  p = CAGrad dual,  p̃ = min(p, w) elementwise (no renormalisation),
        a = w + (s / sqrt(p̃ᵀHp̃))·p̃,

    so ‖d − g_0‖ = c‖g_0‖ still holds and only the correction's direction changes, towards the
    objectives the user weighted. Never rescaled. Degenerate cases, where a = w and ``degenerate``
    is set: c = 0, or g_0 or G_p̃ vanishing by the zero rule (``is_zero_norm``: ‖G_p̃‖ ≤ 1e-3·Σ_i p̃_i‖g_i‖),
    e.g. p and w with disjoint supports (p̃ = 0), or clipped gradients that cancel to rounding.
    ``clip_active`` says whether the clip changed CAGrad's coefficients: some p_i exceeded w_i and p̃
    is not a positive multiple of p (the correction p̃/‖Gp̃‖ is scale-free, so clipping a vertex
    p = e_j to w_j·e_j, or every p_i by one ratio, leaves the direction as CAGrad's).
    """
    h = check_gram(gram)
    w = check_weights(weights, h.shape[0])
    c = check_c(c)
    s, sol = cagrad_dual(h, w, c)
    if sol is None:
        return Aggregation(coefficients=to_output(w, gram), degenerate=True)
    clipped = np.minimum(sol.p, w)
    a = correction_coefficients(w, clipped, h, s)
    return Aggregation(
        coefficients=to_output(w if a is None else a, gram),
        dual=to_output(sol.p, gram),
        clipped_dual=to_output(clipped, gram),
        clip_active=_changes_direction(sol.p, clipped),
        degenerate=a is None,
        dual_gap=sol.gap,
    )
