"""Per-objective pairwise preference losses as functions of the pair's sequence log-probs.

Notation for pair b and objective i: policy log-probs π¹ = log π_θ(y¹|x), π² = log π_θ(y²|x), reference
log-probs ρ¹, ρ², response lengths n¹, n², sign s ∈ {+1, −1, 0} (+1: the objective prefers y¹), and

    Δ = (π¹ − π²) − (ρ¹ − ρ²)                    (implicit reward margin, docs/algorithm.md §1)

Every loss is per row; the sign turns "y¹ vs y²" into "chosen vs rejected" (s·Δ is the chosen−rejected
margin). Rows with s = 0 (tie / objective absent) get no weight: the objective's loss is

    L_i = Σ_{b: s_ib ≠ 0} ℓ_i(b) / D_i,    D_i = B (normalize="batch")  or  N_i (normalize="labeled")

with B the number of pairs and N_i the number of non-zero signs of objective i, both counted over the
whole optimizer-step batch (all micro-batches and ranks), so accumulated micro-batches reproduce the
full-batch gradient exactly. "batch" is the paper's L_i = −mean_{b∈B} log σ(β s_ib Δ_b) with ties
contributing 0 (docs/algorithm.md §1): the user's weights w_i then weigh the objectives as given. "labeled"
averages over the pairs objective i labels, so g_i is scaled by B/N_i (the effective weight becomes
w_i·B/N_i) — the natural choice when each objective has its own dataset. D_i = 0 gives L_i = 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from raco.metric_keys import objective_key
from raco.registry import REFERENCE_FREE_LOSSES


@dataclass(frozen=True)
class PairLogps:
    """Sequence log-probs of a batch of B pairs; ``ref_*`` are None for reference-free losses."""

    policy_1: Tensor
    policy_2: Tensor
    ref_1: Tensor | None
    ref_2: Tensor | None
    length_1: Tensor
    length_2: Tensor

    @classmethod
    def from_rows(cls, logps: Tensor, lengths: Tensor, ref_logps: Tensor | None) -> PairLogps:
        """Split ``[2B]`` row tensors (rows 0..B−1: y¹, rows B..2B−1: y²) into a pair view."""
        p1, p2 = logps.chunk(2)
        l1, l2 = lengths.chunk(2)
        r1, r2 = ref_logps.chunk(2) if ref_logps is not None else (None, None)
        return cls(p1, p2, r1, r2, l1, l2)

    def margin(self) -> Tensor:
        """Δ = (π¹ − π²) − (ρ¹ − ρ²)."""
        if self.ref_1 is None or self.ref_2 is None:
            raise ValueError("this loss needs reference log-probs")
        return (self.policy_1 - self.policy_2) - (self.ref_1 - self.ref_2)

    def normalized_margin(self) -> Tensor:
        """Reference-free, length-normalised margin π¹/n¹ − π²/n² (SimPO, AMoPO)."""
        return self.policy_1 / self.length_1.clamp(min=1) - self.policy_2 / self.length_2.clamp(min=1)


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective: its loss type, β, and loss-specific options.

    ``label_smoothing`` ε applies to ``dpo`` (conservative DPO); ``gamma`` is SimPO's target margin γ.
    """

    name: str
    loss: str = "dpo"
    beta: float = 0.1
    label_smoothing: float = 0.0
    gamma: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {sorted(LOSSES)}")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")

    @property
    def needs_reference(self) -> bool:
        return self.loss not in REFERENCE_FREE


def dpo_loss(pair: PairLogps, signs: Tensor, spec: ObjectiveSpec) -> Tensor:
    """DPO (Rafailov et al. 2023), with cDPO label smoothing ε (Mitchell 2023):
    ℓ = −(1−ε) log σ(β sΔ) − ε log σ(−β sΔ)."""
    z = spec.beta * signs * pair.margin()
    eps = spec.label_smoothing
    return -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)


def ipo_loss(pair: PairLogps, signs: Tensor, spec: ObjectiveSpec) -> Tensor:
    """IPO (Azar et al. 2023, eq. 17, sequence-level as in docs/algorithm.md): ℓ = (sΔ − 1/(2β))²."""
    return (signs * pair.margin() - 1 / (2 * spec.beta)) ** 2


def hinge_loss(pair: PairLogps, signs: Tensor, spec: ObjectiveSpec) -> Tensor:
    """Hinge / SLiC (Zhao et al. 2023): ℓ = max(0, 1 − β sΔ)."""
    return torch.relu(1 - spec.beta * signs * pair.margin())


def _normalized_logistic(pair: PairLogps, signs: Tensor, beta: float, gamma: float) -> Tensor:
    """ℓ = −log σ(β s (π¹/n¹ − π²/n²) − γ): the length-normalised, reference-free logistic loss."""
    return -F.logsigmoid(beta * signs * pair.normalized_margin() - gamma)


def simpo_loss(pair: PairLogps, signs: Tensor, spec: ObjectiveSpec) -> Tensor:
    """SimPO (Meng et al. 2024), reference-free: ℓ = −log σ(β s (π¹/n¹ − π²/n²) − γ)."""
    return _normalized_logistic(pair, signs, spec.beta, spec.gamma)


def amopo_loss(pair: PairLogps, signs: Tensor, spec: ObjectiveSpec) -> Tensor:
    """Static AMoPO per-objective term (docs/algorithm.md §1): ℓ_i = −log σ(β s (π¹/n¹ − π²/n²)).

    The AMoPO baseline loss is L = Σ_i w_i L_i: run it as weighted-sum aggregation (a = w) of these
    per-objective losses, which gives exactly ∇L (the gradient is linear in the losses). It is SimPO's
    loss with γ = 0 (an objective's γ is ignored)."""
    return _normalized_logistic(pair, signs, spec.beta, 0.0)


LossFn = Callable[[PairLogps, Tensor, ObjectiveSpec], Tensor]
LOSSES: dict[str, LossFn] = {
    "dpo": dpo_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
    "amopo": amopo_loss,
}
"""Name -> loss; the names are listed torch-free in :data:`raco.registry.LOSS_NAMES` (kept equal by
tests/test_registries.py)."""
REFERENCE_FREE = REFERENCE_FREE_LOSSES


def objective_losses(
    pair: PairLogps,
    signs: Tensor,
    objectives: tuple[ObjectiveSpec, ...] | list[ObjectiveSpec],
    counts: Tensor,
) -> Tensor:
    """``[k]`` losses L_i = Σ_{b: s_ib≠0} ℓ_i(b) / max(D_i, 1); ``signs [B, k]``, global denominators
    ``counts [k]`` (``loss_denominators`` summed over ranks)."""
    losses = []
    for i, spec in enumerate(objectives):
        s = signs[:, i].to(pair.policy_1.dtype)
        per_row = LOSSES[spec.loss](pair, s, spec)
        per_row = torch.where(s != 0, per_row, torch.zeros_like(per_row))
        losses.append(per_row.sum() / counts[i].clamp(min=1).to(per_row.dtype))
    return torch.stack(losses)


def count_nonzero_signs(signs: Tensor) -> Tensor:
    """``[k]`` number of rows with a non-zero sign per objective (float64)."""
    return (signs != 0).sum(dim=0).to(torch.float64)


NORMALIZATIONS = ("batch", "labeled")


def loss_denominators(signs: list[Tensor] | tuple[Tensor, ...], normalize: str) -> Tensor:
    """``[k]`` D_i over the micro-batches' ``signs [B_m, k]`` of one step (this process; sum over ranks
    for the global value): the pair count B for "batch", the non-zero signs N_i for "labeled"."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    k = signs[0].shape[1]
    if normalize == "batch":
        return torch.full((k,), float(sum(s.shape[0] for s in signs)), dtype=torch.float64)
    return torch.stack([count_nonzero_signs(s).cpu() for s in signs]).sum(dim=0)


def implicit_rewards(pair: PairLogps, spec: ObjectiveSpec) -> tuple[Tensor, Tensor]:
    """Unscaled implicit rewards of y¹ and y²: π − ρ, or π/n for reference-free losses (SimPO's)."""
    if spec.loss in REFERENCE_FREE:
        return pair.policy_1 / pair.length_1.clamp(min=1), pair.policy_2 / pair.length_2.clamp(min=1)
    return pair.policy_1 - pair.ref_1, pair.policy_2 - pair.ref_2


REWARD_SUMS = ("chosen", "rejected", "margins", "correct", "count")


def reward_sums(
    pair: PairLogps, signs: Tensor, objectives: tuple[ObjectiveSpec, ...] | list[ObjectiveSpec]
) -> Tensor:
    """``[k, 5]`` float64 CPU sums over the rows with s ≠ 0, per objective (columns ``REWARD_SUMS``):
    Σ chosen reward, Σ rejected reward, Σ margin, rows whose chosen reward is higher, rows.

    Sums add over micro-batches and processes, so a step's metrics are ``reward_means`` of their total:
    the values over the whole step's batch (a mean of per-micro-batch means is not, when micro-batches
    hold different numbers of rows with s ≠ 0)."""
    rows = []
    for i, spec in enumerate(objectives):
        s = signs[:, i]
        keep = s != 0
        r1, r2 = implicit_rewards(pair, spec)
        r1, r2 = spec.beta * r1.detach()[keep].double(), spec.beta * r2.detach()[keep].double()
        first = s[keep] > 0
        chosen, rejected = torch.where(first, r1, r2), torch.where(first, r2, r1)
        correct, count = (chosen > rejected).sum(), keep.sum()
        rows.append(torch.stack([chosen.sum(), rejected.sum(), (chosen - rejected).sum(), correct, count]))
    return torch.stack(rows).to("cpu", torch.float64)


def reward_means(
    sums: Tensor, objectives: tuple[ObjectiveSpec, ...] | list[ObjectiveSpec]
) -> dict[str, float]:
    """``<objective>/rewards/{chosen,rejected,margins,accuracies}`` (TRL's names after the objective's,
    raco/metric_keys.py) from ``reward_sums`` summed over any number of batches; an objective without
    rows with s ≠ 0 has no entry."""
    metrics: dict[str, float] = {}
    for spec, (chosen, rejected, margins, correct, count) in zip(objectives, sums.tolist(), strict=True):
        if count == 0:
            continue
        for name, total in (
            ("chosen", chosen),
            ("rejected", rejected),
            ("margins", margins),
            ("accuracies", correct),
        ):
            metrics[objective_key(spec.name, f"rewards/{name}")] = total / count
    return metrics


def objective_metrics(
    pair: PairLogps, signs: Tensor, objectives: tuple[ObjectiveSpec, ...] | list[ObjectiveSpec]
) -> dict[str, float]:
    """TRL-named metrics per objective over rows with s ≠ 0, "chosen" being the response s prefers:

    rewards/chosen = mean β(π_c − ρ_c), rewards/rejected = mean β(π_r − ρ_r), rewards/margins = their
    mean difference, rewards/accuracies = mean [chosen reward > rejected reward]. Reference-free losses use
    the length-normalised log-probs β π/n as rewards (SimPO's implicit reward). Means over this batch;
    for several batches, add their ``reward_sums`` and take ``reward_means`` of the total.
    """
    return reward_means(reward_sums(pair, signs, objectives), objectives)
