"""What the gradient engine reports: a micro-batch's additive statistics, a step's aggregation and the
quantities derived from its Gram matrix H = G Gᵀ (docs/algorithm.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from raco.aggregators import min_norm


@dataclass(frozen=True)
class MicroBatchStats:
    """What one micro-batch adds to its step: per-objective losses ``[k]`` (its share of L_i) and reward
    sums ``[k, len(REWARD_SUMS)]`` (losses/pairwise.py); both add over micro-batches and processes."""

    losses: Tensor
    reward_sums: Tensor


@dataclass(frozen=True)
class StepReport:
    """What one optimizer step did. ``gram``/``grad_norms``/``cosines`` are None on the scalarized path;
    with ``solve_per="microbatch"`` they describe the last micro-batch and ``coefficients`` is the mean."""

    coefficients: Tensor
    losses: Tensor
    gram: Tensor | None = None
    dual: Tensor | None = None
    pareto_measure: float | None = None
    grad_norms: Tensor | None = None
    cosines: Tensor | None = None
    clip_active: bool = False


def pareto_measure(gram: Tensor) -> float:
    """M = min_{p∈Δ} ‖Σ p_i g_i‖ (docs/algorithm.md §2): 0 exactly at Pareto-critical points."""
    return min_norm(gram)


class NonFiniteGradientError(FloatingPointError):
    """A per-objective gradient of this step has NaN/inf; the step was discarded (no ``.grad`` written)."""


def gram_summary(gram: Tensor) -> tuple[Tensor, Tensor]:
    """Per-objective gradient norms ‖g_i‖ and pairwise cosines from H."""
    norms = gram.diagonal().clamp(min=0).sqrt()
    denom = torch.outer(norms, norms).clamp(min=1e-300)
    return norms, gram / denom
