"""The result type shared by every aggregator."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Aggregation:
    """How to combine k per-objective gradients: the update direction is d = Σ_i coefficients[i]·g_i.

    Attributes:
        coefficients: float64 tensor [k] (no autograd graph), on the Gram matrix's device.
        dual: the CAGrad dual solution p on the simplex, or None where the method has none (or where
            the correction is zero, see ``degenerate``).
        clipped_dual: RACO's clipped dual p̃ = min(p, w); None for the other methods.
        clip_active: True when RACO's clip changed CAGrad's coefficients (p̃ not a multiple of p).
        degenerate: True when the conflict correction was undefined or zero and the method fell back
            to a = w (c = 0, g_0 = 0, or a zero-norm correction direction).
        dual_gap: certified optimality gap of the dual solve (Frank–Wolfe gap, objective units), or
            None where no dual was solved.
    """

    coefficients: torch.Tensor
    dual: torch.Tensor | None = None
    clipped_dual: torch.Tensor | None = None
    clip_active: bool = False
    degenerate: bool = False
    dual_gap: float | None = None
