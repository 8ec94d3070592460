"""Theory on analytic problems (issue 15): RACO's clipping claim, and gradient descent with every
aggregator on small multi-objective test problems.

    .venv/bin/python benchmarks/convergence.py [--quick] [--figures DIR] [--seed N]

Every aggregator is called from ``raco.aggregators`` (nothing is reimplemented here); the problems'
losses and gradients are written out in numpy (their gradients are checked against torch.autograd in
tests/benchmarks/test_convergence.py). Three parts, each printing tables:

1. **The two-objective clipping claim** (docs/algorithm.md §4, the paper's Thm 3.2). For k = 2, with
   g₀ = Σ w_i g_i, p the CAGrad dual, p̃ = min(p, w) RACO's clipped dual, ρ = cos(g₀, G p) and
   ρ̃ = cos(g₀, G p̃), the guaranteed decrease of L_w per step is η‖g₀‖²·Γ(·) with

       Γ(ρ) = 1 + cρ − (ℓ_w η / 2)(1 + c² + 2cρ),   so   Γ(ρ̃) − Γ(ρ) = c(1 − ℓ_w η)(ρ̃ − ρ),

   claimed ≥ 0, and > 0 when p is interior (0 < p₁ < 1) and p ≠ w. Random instances: gradients in
   R^d (d ∈ {2, 3, 16}) with norms log-uniform over 10^±2, w₁ ~ U(0, 1), c ~ U(0, 0.95),
   ℓ_w η ~ U(0, 1). p and p̃ are read from ``raco(...)`` (``dual``, ``clipped_dual``); Γ is evaluated
   from its definition and the difference is counted positive / zero / negative with tolerance 1e-12,
   split by the condition (interior: min p_i > 1e-9; p ≠ w: max|p_i − w_i| > 1e-9).

2. **Gradient descent** θ ← θ − η·d, d = Σ a_i g_i, a = aggregator(H, w) with H the Gram matrix of the
   exact gradients (deterministic, no optimizer state). Each step's length is capped at ``max_step``
   (a trust-region cap against the 1/|u| gradients next to the toy's log singularities; the same rule
   for every method). Measures per run (tables: median or mean over starts × weight vectors):

   * steps to Pareto-criticality: the first t with M(θ_t) ≤ ε, where M = ``min_norm(H)`` =
     min_{p∈Δ} ‖Σ p_i g_i‖ (docs/algorithm.md §2; a norm, not squared). Runs that never get there
     within T steps count as T + 1 ("reached" gives the fraction that did).
   * the final weighted loss as a gap (column "L_w gap", mean): L_w(θ_T) − L_w*, L_w = Σ w_i L_i,
     L_w* its global minimum (toy: x₁ in closed form, then a bounded 1-D search; ff: mean-shift from
     many starts, keeping every global minimiser; quad: closed form).
   * the **target distance** — how far the end point lies from the trade-off the weights ask for.
     The weights ask for θ*_w = argmin L_w (the point Thm 3.1 drives RACO, CAGrad and weighted_sum
     towards; MGDA ignores w). With the payoff table of the single-objective minimisers giving the
     ideal z_i = min L_i and the nadir n_i = max_j L_i(θ*_{e_j}),

         target distance = min over global minimisers θ*_w of
                           sqrt( (1/k) Σ_i ((L_i(θ_T) − L_i(θ*_w)) / (n_i − z_i))² ),

     the RMS distance in objective space with every objective scaled to its front's range:
     0 = the run ended at the weight-preferred Pareto point, 0.1 = 10 % of the front's range away
     (columns "target", the median, and "p90", the 90th percentile).
   * "clip": for ``raco``, the fraction of steps where the clip changed the correction's direction
     (p̃ not proportional to p; for k = 2 that needs p interior and p ≠ w — a vertex p = e_j clips to
     w_j e_j, the same direction, so RACO's step equals CAGrad's).
   * "warn": RuntimeWarnings raised by the aggregators and ``min_norm`` (a dual they could not certify
     on a numerically singular Gram matrix; the best point found is used).

   Problems (all unconstrained, θ ∈ R^n):

   * ``toy`` (k = 2, n = 2): the two-objective toy problem of CAGrad (Liu et al., NeurIPS 2021,
     arXiv 2110.14048, appendix and its toy.py), with θ = (x₁, x₂):

         L₁ = c₁(θ) f₁(θ) + c₂(θ) q₁(θ),   L₂ = c₁(θ) f₂(θ) + c₂(θ) q₂(θ),
         f₁ = log max(|0.5(−x₁ − 7) − tanh(−x₂)|, 5·10⁻⁶) + 6,
         f₂ = log max(|0.5(−x₁ + 3) + tanh(−x₂) + 2|, 5·10⁻⁶) + 6,
         q₁ = ((−x₁ + 7)² + 0.1(−x₂ − 8)²)/10 − 20,   q₂ = ((−x₁ − 7)² + 0.1(−x₂ − 8)²)/10 − 20,
         c₁ = max(tanh(x₂/2), 0),   c₂ = max(tanh(−x₂/2), 0).

     Its Pareto set is x₂ ≈ −8.355, x₁ ∈ [−7, 7]; the upper half-plane has log valleys (local traps).
     It is only piecewise smooth (kinks at x₂ = 0, log singularities), so the theory's smoothness
     assumption does not hold everywhere. Starts: the paper's three, (−8.5, 7.5), (−8.5, −5), (9, 9),
     plus seeded uniform ones in [−10, 10]².
   * ``ff2`` (k = 2, n = 8) and ``ff3`` (k = 3, n = 8): Fonseca–Fleming, generalised to k anchors:
     L_i = 1 − exp(−‖θ − a_i‖²) with a_i = √2·e_i − centroid (pairwise distance 2; ``ff2`` is the
     classic Fonseca–Fleming problem up to a rotation). Smooth, nonconvex, concave Pareto front (the
     convex hull of the anchors), so a weighted sum has its minimisers towards the front's ends.
     ``ffk`` is the scalable family used for k = 2..8.
   * ``quad3`` (k = 3, n = 8): convex reference, L_i = ½(θ − a_i)ᵀ A_i (θ − a_i) with seeded SPD A_i
     (condition number ≤ 10) and anchors a_i; L_w* is reached at (Σ w_i A_i)⁻¹ Σ w_i A_i a_i.

3. **The open questions**: the c sweep (c ∈ 0..0.9, ``cagrad`` and ``raco``; c = 0 is
   ``weighted_sum``), the k sweep (``ffk``, k ∈ {2, 3, 4, 6, 8}, every method at c = 0.4), and label
   noise. Label noise is modelled by a **proxy**: at every step each objective's gradient has its sign
   flipped with probability q, independently (a flipped preference label flips the sign of that pair's
   loss gradient; flipping a whole objective's gradient is the extreme where a batch is dominated by
   flipped labels; in expectation the gradient shrinks to (1 − 2q)·g_i). The aggregators see the flipped
   gradients; M(θ) and the measures use the true ones.

With default arguments the whole script takes about 2 minutes of CPU time (3-5 minutes wall on a
busy 2-core machine); ``--quick`` runs a tiny version (seconds) for the tests. Figures are written to
``--figures`` (PNG, Agg backend).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.optimize import minimize_scalar

from raco.aggregators import cagrad, mgda, min_norm, raco, weighted_sum
from raco.aggregators._types import Aggregation

METHODS: dict[str, Callable[..., Aggregation]] = {
    "weighted_sum": weighted_sum,
    "mgda": mgda,
    "cagrad": cagrad,
    "raco": raco,
}
COLORS = {"weighted_sum": "tab:blue", "mgda": "tab:purple", "cagrad": "tab:orange", "raco": "tab:red"}
DEFAULT_FIGURES = Path(__file__).resolve().parent / "figures" / "convergence"
TOL = 1e-12

Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# ----------------------------------------------------------------------------------------------------
# Part 1: the two-objective clipping claim (Thm 3.2)
# ----------------------------------------------------------------------------------------------------


def gamma(rho: float, c: float, lw_eta: float) -> float:
    """Γ(ρ) = 1 + cρ − (ℓ_w η / 2)(1 + c² + 2cρ): the guaranteed decrease of L_w per step, in units
    of η‖g₀‖² (docs/algorithm.md §4)."""
    return 1.0 + c * rho - 0.5 * lw_eta * (1.0 + c * c + 2.0 * c * rho)


def _cos(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


@dataclass(frozen=True)
class ClipInstance:
    """ρ, ρ̃ and Γ(ρ̃) − Γ(ρ) for one two-objective instance; ``degenerate`` when RACO has no
    correction (s = 0, or G p̃ zero by the zero rule), where ρ̃ is undefined."""

    p: np.ndarray
    p_clipped: np.ndarray
    rho: float
    rho_clipped: float
    delta: float
    condition: bool  # p interior and p != w
    degenerate: bool


def clip_instance(g: np.ndarray, w: np.ndarray, c: float, lw_eta: float) -> ClipInstance:
    """Evaluate Thm 3.2 on gradients g [2, d] with RACO's own dual and clipped dual."""
    gram = torch.from_numpy(g @ g.T)
    agg = raco(gram, torch.from_numpy(w), c=c)
    nan2 = np.full(2, np.nan)
    if agg.dual is None or agg.clipped_dual is None:
        return ClipInstance(nan2, nan2, math.nan, math.nan, math.nan, False, True)
    p = agg.dual.numpy()
    pt = agg.clipped_dual.numpy()
    g0 = w @ g
    rho = _cos(g0, p @ g)
    rho_t = _cos(g0, pt @ g) if not agg.degenerate else math.nan
    condition = bool(p.min() > 1e-9 and np.abs(p - w).max() > 1e-9)
    delta = gamma(rho_t, c, lw_eta) - gamma(rho, c, lw_eta)
    return ClipInstance(p, pt, rho, rho_t, delta, condition, agg.degenerate)


# The hand-checkable witness. g₁ = (1, −4), g₂ = (−1, 1), w = (0.2, 0.8), c = 0.5.
#   H = [[17, −5], [−5, 2]];  g₀ = 0.2 g₁ + 0.8 g₂ = (−0.6, 0), ‖g₀‖ = 0.6, s = c‖g₀‖ = 0.3;
#   b = Hw = (⟨g₁, g₀⟩, ⟨g₂, g₀⟩) = (−0.6, 0.6).
#   Dual over p = (λ, 1 − λ): h(λ) = 0.6 − 1.2λ + 0.3·sqrt(Q(λ)), Q(λ) = ‖G p‖² = 29λ² − 14λ + 2.
#   h'(λ) = 0 ⇔ 58λ − 14 = 8·sqrt(Q) (needs λ ≥ 14/58); squaring: 377λ² − 182λ + 17 = 0, whose root
#   above 14/58 is λ = (91 + 12√13)/377 ≈ 0.356145 (the other, ≈ 0.1266, is extraneous). There
#   Q = 9/13, ‖G p‖ = 3/√13 ≈ 0.832050, and h ≈ 0.4222 < h(1) ≈ 0.6369 < h(0) ≈ 1.0243: p is interior.
#   G p = (2λ − 1, 1 − 5λ) ≈ (−0.287710, −0.780724);  ρ = (1 − 2λ)·√13/3 = (5√13 − 8)/29 ≈ 0.345785.
#   p₁ > w₁, so p̃ = (0.2, 1 − λ) ≈ (0.2, 0.643855): G p̃ = (λ − 0.8, 0.2 − λ) ≈ (−0.443855, −0.156145),
#   ‖G p̃‖ ≈ 0.470519, ρ̃ = (0.8 − λ)/‖G p̃‖ ≈ 0.943330.
#   Γ(ρ̃) − Γ(ρ) = c(1 − ℓ_w η)(ρ̃ − ρ) ≈ 0.5 × 0.597545 × (1 − ℓ_w η) = 0.298773·(1 − ℓ_w η),
#   e.g. 0.149386 at ℓ_w η = 0.5. Coefficients: CAGrad a = w + s p/‖Gp‖ ≈ (0.328410, 1.032145);
#   RACO a = w + s p̃/‖Gp̃‖ ≈ (0.327519, 1.210518).
WITNESS = {
    "g": np.array([[1.0, -4.0], [-1.0, 1.0]]),
    "w": np.array([0.2, 0.8]),
    "c": 0.5,
    "lw_eta": 0.5,
}


def part1(n: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    rows: list[ClipInstance] = []
    identity_err = 0.0
    for _ in range(n):
        d = int(rng.choice([2, 3, 16]))
        g = rng.standard_normal((2, d)) * (10.0 ** rng.uniform(-2, 2, size=(2, 1)))
        w1 = rng.uniform(0.0, 1.0)
        w = np.array([w1, 1.0 - w1])
        c = float(rng.uniform(0.0, 0.95))
        lw_eta = float(rng.uniform(0.0, 1.0))
        inst = clip_instance(g, w, c, lw_eta)
        rows.append(inst)
        if not inst.degenerate:
            closed = c * (1.0 - lw_eta) * (inst.rho_clipped - inst.rho)
            identity_err = max(identity_err, abs(closed - inst.delta))
    table: dict[str, dict[str, int]] = {}
    for label, keep in (
        ("p interior, p != w", lambda r: not r.degenerate and r.condition),
        ("p at a vertex or p = w", lambda r: not r.degenerate and not r.condition),
    ):
        sel = [r for r in rows if keep(r)]
        table[label] = {
            "n": len(sel),
            "positive": sum(r.delta > TOL for r in sel),
            "zero": sum(abs(r.delta) <= TOL for r in sel),
            "negative": sum(r.delta < -TOL for r in sel),
        }
    cond = np.array([r.delta for r in rows if not r.degenerate and r.condition])
    gap = np.array([r.rho_clipped - r.rho for r in rows if not r.degenerate and r.condition])
    w = WITNESS
    wit = clip_instance(w["g"], w["w"], w["c"], w["lw_eta"])
    return {
        "n": n,
        "table": table,
        "degenerate": sum(r.degenerate for r in rows),
        "identity_err": identity_err,
        "delta_quantiles": np.quantile(cond, [0.0, 0.1, 0.5, 0.9, 1.0]) if cond.size else np.zeros(5),
        "rho_gap_min": float(gap.min()) if gap.size else math.nan,
        "witness": wit,
    }


def print_part1(res: dict[str, object]) -> None:
    print(f"\n### 1. Thm 3.2 (k = 2): Γ(ρ̃) − Γ(ρ) over {res['n']} random instances (tolerance {TOL:g})")
    print(f"{'condition':<26s}{'n':>7s}{'> 0':>8s}{'= 0':>8s}{'< 0':>8s}")
    table = res["table"]
    assert isinstance(table, dict)
    for label, row in table.items():
        print(f"{label:<26s}{row['n']:>7d}{row['positive']:>8d}{row['zero']:>8d}{row['negative']:>8d}")
    print(f"degenerate (no RACO correction): {res['degenerate']}")
    q = res["delta_quantiles"]
    print(
        "Γ(ρ̃) − Γ(ρ) where p interior, p != w: min {:.3g}, 10% {:.3g}, median {:.3g}, 90% {:.3g}, "
        "max {:.3g}".format(*q)  # type: ignore[misc]
    )
    print(f"smallest ρ̃ − ρ there: {res['rho_gap_min']:.3g}")
    print(f"|Γ(ρ̃) − Γ(ρ) − c(1 − ℓ_w η)(ρ̃ − ρ)| max: {res['identity_err']:.2g}")
    wit = res["witness"]
    assert isinstance(wit, ClipInstance)
    print(
        f"witness g1=(1,-4), g2=(-1,1), w=(.2,.8), c=.5, ℓ_w η=.5: p = ({wit.p[0]:.6f}, {wit.p[1]:.6f}), "
        f"p̃ = ({wit.p_clipped[0]:.6f}, {wit.p_clipped[1]:.6f}), ρ = {wit.rho:.6f}, "
        f"ρ̃ = {wit.rho_clipped:.6f}, Γ(ρ̃) − Γ(ρ) = {wit.delta:.6f}"
    )


# ----------------------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------------------

TOY_LOWER = 5e-6


def toy_evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CAGrad's toy problem (see the module docstring): losses [N, 2] and gradients [N, 2, 2]."""
    x1, x2 = theta[:, 0], theta[:, 1]
    t2 = np.tanh(x2)
    sech2 = 1.0 - t2**2
    u1 = 0.5 * (-x1 - 7.0) + t2  # − tanh(−x₂) = + tanh(x₂)
    u2 = 0.5 * (-x1 + 3.0) - t2 + 2.0
    f, df = [], []
    for u, du2 in ((u1, sech2), (u2, -sech2)):
        au = np.abs(u)
        inside = au > TOY_LOWER
        f.append(np.log(np.maximum(au, TOY_LOWER)) + 6.0)
        inv = np.where(inside, 1.0 / np.where(inside, u, 1.0), 0.0)
        df.append((-0.5 * inv, du2 * inv))
    h = np.tanh(0.5 * x2)
    dh = 0.5 * (1.0 - h**2)
    c1, dc1 = np.where(x2 > 0, h, 0.0), np.where(x2 > 0, dh, 0.0)
    c2, dc2 = np.where(x2 < 0, -h, 0.0), np.where(x2 < 0, -dh, 0.0)
    losses = np.empty((len(theta), 2))
    grads = np.empty((len(theta), 2, 2))
    for i, sign in ((0, -1.0), (1, 1.0)):
        q = ((x1 + sign * 7.0) ** 2 + 0.1 * (x2 + 8.0) ** 2) / 10.0 - 20.0
        dq1 = (x1 + sign * 7.0) / 5.0
        dq2 = 0.02 * (x2 + 8.0)
        losses[:, i] = c1 * f[i] + c2 * q
        grads[:, i, 0] = c1 * df[i][0] + c2 * dq1
        grads[:, i, 1] = dc1 * f[i] + c1 * df[i][1] + dc2 * q + c2 * dq2
    return losses, grads


def ff_anchors(k: int, dim: int = 8) -> np.ndarray:
    """k anchors with pairwise distance 2, centred: √2·e_i minus their centroid, in R^dim."""
    a = np.zeros((k, dim))
    a[:, :k] = math.sqrt(2.0) * np.eye(k)
    return a - a.mean(axis=0)


def make_ff(anchors: np.ndarray) -> Evaluate:
    def evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = theta[:, None, :] - anchors[None, :, :]  # [N, k, n]
        e = np.exp(-(diff**2).sum(-1))
        return 1.0 - e, 2.0 * e[:, :, None] * diff

    return evaluate


def make_quad(anchors: np.ndarray, mats: np.ndarray) -> Evaluate:
    def evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = theta[:, None, :] - anchors[None, :, :]
        ad = np.einsum("kij,nkj->nki", mats, diff)
        return 0.5 * (diff * ad).sum(-1), ad

    return evaluate


def quad_minimiser(anchors: np.ndarray, mats: np.ndarray, w: np.ndarray) -> np.ndarray:
    """argmin Σ w_i ½(θ − a_i)ᵀA_i(θ − a_i) = (Σ w_i A_i)⁻¹ Σ w_i A_i a_i."""
    a_w = np.einsum("k,kij->ij", w, mats)
    return np.linalg.solve(a_w, np.einsum("k,kij,kj->i", w, mats, anchors))


def random_spd(rng: np.random.Generator, k: int, dim: int, cond: float = 10.0) -> np.ndarray:
    out = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        out.append(q @ np.diag(np.geomspace(1.0, 1.0 / cond, dim)) @ q.T)
    return np.array(out)


def ff_modes(anchors: np.ndarray, w: np.ndarray, iters: int = 3000) -> np.ndarray:
    """Local minimisers of L_w = 1 − Σ w_i exp(−‖θ − a_i‖²) = modes of the Gaussian mixture
    Σ w_i exp(−‖θ − a_i‖²), by the mean-shift fixed point θ ← Σ w_i e_i a_i / Σ w_i e_i (monotone
    ascent of the mixture), started at the anchors, between them and at seeded points of their hull."""
    k = len(anchors)
    rng = np.random.default_rng(12345)
    theta = np.concatenate(
        [
            anchors,
            0.9 * anchors + 0.1 * anchors.mean(0),
            [w @ anchors],
            rng.dirichlet(np.ones(k), 16) @ anchors,
        ]
    )
    for _ in range(iters):
        e = w[None, :] * np.exp(-((theta[:, None, :] - anchors[None]) ** 2).sum(-1))
        new = (e @ anchors) / e.sum(1, keepdims=True)
        if np.abs(new - theta).max() < 1e-14:
            return new
        theta = new
    return theta


@dataclass
class Problem:
    """A multi-objective test problem with its GD settings and reference solutions."""

    name: str
    k: int
    dim: int
    evaluate: Evaluate
    lr: float
    eps: float
    steps: int
    box: float  # random starts uniform in [−box, box]^dim
    max_step: float
    candidates: Callable[[np.ndarray], np.ndarray]  # w -> local minimisers of L_w (one per row)
    pareto_samples: Callable[[], np.ndarray]  # points of the Pareto set, for the front plots
    fixed_starts: Sequence[Sequence[float]] = ()
    _cache: dict[tuple[float, ...], tuple[np.ndarray, float]] = field(default_factory=dict)
    _payoff: tuple[np.ndarray, np.ndarray] | None = None

    def weighted_minimisers(self, w: np.ndarray) -> tuple[np.ndarray, float]:
        """The global minimisers of L_w among the problem's candidates (within 1e-9 of the best value,
        deduplicated), and L_w*."""
        key = tuple(np.round(w, 12))
        if key not in self._cache:
            cand = self.candidates(w)
            values = self.evaluate(cand)[0] @ w
            best = float(values.min())
            pts: list[np.ndarray] = []
            for i in np.argsort(values):
                if values[i] <= best + 1e-9 and all(np.linalg.norm(cand[i] - y) > 1e-4 for y in pts):
                    pts.append(cand[i])
            self._cache[key] = (np.array(pts), best)
        return self._cache[key]

    def payoff(self) -> tuple[np.ndarray, np.ndarray]:
        """(ideal, nadir) from the payoff table of the single-objective minimisers."""
        if self._payoff is None:
            table = np.array(
                [self.evaluate(self.weighted_minimisers(e)[0][:1])[0][0] for e in np.eye(self.k)]
            )
            self._payoff = (table.min(axis=0), table.max(axis=0))
        return self._payoff

    def target_distance(self, losses: np.ndarray, w: np.ndarray) -> float:
        ideal, nadir = self.payoff()
        pts, _ = self.weighted_minimisers(w)
        ref = self.evaluate(pts)[0]
        scaled = (losses[None, :] - ref) / np.maximum(nadir - ideal, 1e-12)
        return float(np.sqrt((scaled**2).mean(axis=1)).min())

    def starts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        fixed = np.array(self.fixed_starts, dtype=float).reshape(-1, self.dim)[:n]
        rand = rng.uniform(-self.box, self.box, size=(n - len(fixed), self.dim))
        return np.concatenate([fixed, rand])


def toy_minimiser(w: np.ndarray) -> np.ndarray:
    """argmin L_w of the toy: in the lower half-plane L_w = tanh(−x₂/2)·(w₁q₁ + w₂q₂), minimised in x₁
    at x₁ = 7(w₁ − w₂) (∂/∂x₁ = tanh(−x₂/2)·(x₁ − 7(w₁ − w₂))/5), then in x₂ by a bounded 1-D search.
    (The upper half-plane has L_i ≥ −6.2; the lower one reaches below −19.)"""
    x1 = 7.0 * (w[0] - w[1])

    def fun(x2: float) -> float:
        return float(toy_evaluate(np.array([[x1, x2]]))[0][0] @ w)

    x2 = minimize_scalar(fun, bounds=(-12.0, -1.0), method="bounded", options={"xatol": 1e-10}).x
    return np.array([[x1, float(x2)]])


def toy_problem(steps: int = 1500) -> Problem:
    return Problem(
        name="toy",
        k=2,
        dim=2,
        evaluate=toy_evaluate,
        lr=0.1,
        eps=1e-2,
        steps=steps,
        box=10.0,
        max_step=0.5,
        candidates=toy_minimiser,
        pareto_samples=lambda: np.concatenate(
            [toy_minimiser(np.array([a, 1 - a])) for a in np.linspace(0, 1, 41)]
        ),
        fixed_starts=((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0)),
    )


def ff_problem(k: int, steps: int = 400, dim: int = 8) -> Problem:
    anchors = ff_anchors(k, dim)
    rng = np.random.default_rng(0)
    return Problem(
        name=f"ff{k}",
        k=k,
        dim=dim,
        evaluate=make_ff(anchors),
        lr=0.25,
        eps=1e-3,
        steps=steps,
        box=1.0,
        max_step=0.5,
        candidates=lambda w: ff_modes(anchors, w),
        pareto_samples=lambda: rng.dirichlet(np.full(k, 0.5), 400) @ anchors,  # the anchors' convex hull
    )


def quad_problem(k: int = 3, steps: int = 400, dim: int = 8, seed: int = 7) -> Problem:
    rng = np.random.default_rng(seed)
    anchors = rng.standard_normal((k, dim))
    mats = random_spd(rng, k, dim)
    return Problem(
        name=f"quad{k}",
        k=k,
        dim=dim,
        evaluate=make_quad(anchors, mats),
        lr=0.5,
        eps=1e-3,
        steps=steps,
        box=3.0,
        max_step=10.0,
        candidates=lambda w: quad_minimiser(anchors, mats, w)[None, :],
        pareto_samples=lambda: np.array(
            [quad_minimiser(anchors, mats, w) for w in rng.dirichlet(np.full(k, 0.5), 400)]
        ),
    )


# ----------------------------------------------------------------------------------------------------
# Gradient descent
# ----------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    theta: np.ndarray  # final points [R, n]
    losses: np.ndarray  # final losses [R, k]
    hit: np.ndarray  # first step with M <= eps, or steps + 1
    trajectory: np.ndarray | None  # [T + 1, R, n] when recorded
    clip_fraction: float  # RACO: fraction of steps where the clip turned the correction (p̃ not ∝ p)
    warnings: int  # RuntimeWarnings the aggregators and min_norm raised (uncertified duals)


def gradient_descent(
    problem: Problem,
    method: str,
    starts: np.ndarray,
    weights: np.ndarray,
    c: float = 0.4,
    steps: int | None = None,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    record: bool = False,
) -> RunResult:
    """Deterministic GD (stochastic only through the sign-flip noise proxy) for R runs at once:
    starts [R, n], weights [R, k]."""
    fn = METHODS[method]
    steps = problem.steps if steps is None else steps
    theta: np.ndarray = starts.astype(float).copy()
    runs = len(theta)
    hit = np.full(runs, steps + 1)
    w_t = [torch.from_numpy(w.astype(float)) for w in weights]
    kwargs = {"c": c} if method in ("cagrad", "raco") else {}
    traj = [theta.copy()] if record else None
    losses = np.empty((runs, problem.k))
    clipped = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        for t in range(steps + 1):
            losses, theta, done = _gd_step(problem, fn, kwargs, theta, w_t, hit, t, steps, noise, rng, traj)
            clipped += done
            if t == steps:
                break
    n_warn = sum(issubclass(c.category, RuntimeWarning) for c in caught)
    return RunResult(
        theta, losses, hit, None if traj is None else np.array(traj), clipped / max(1, steps * runs), n_warn
    )


def _gd_step(
    problem: Problem,
    fn: Callable[..., Aggregation],
    kwargs: dict[str, float],
    theta: np.ndarray,
    w_t: list[torch.Tensor],
    hit: np.ndarray,
    t: int,
    steps: int,
    noise: float,
    rng: np.random.Generator | None,
    traj: list[np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One step for every run: records M-hits at θ_t (true gradients) and returns θ_{t+1}
    (θ_t itself at t = steps) and how many runs had RACO's clip active."""
    runs = len(theta)
    losses, grads = problem.evaluate(theta)
    gram = np.einsum("rkn,rjn->rkj", grads, grads)
    for i in np.flatnonzero(hit > steps):
        if min_norm(torch.from_numpy(gram[i])) <= problem.eps:
            hit[i] = t
    if t == steps:
        return losses, theta, 0
    if noise > 0.0:
        assert rng is not None
        signs = np.where(rng.random((runs, problem.k)) < noise, -1.0, 1.0)
        grads = grads * signs[:, :, None]
        gram = gram * signs[:, :, None] * signs[:, None, :]
    direction = np.empty_like(theta)
    clipped = 0
    for r in range(runs):
        agg = fn(torch.from_numpy(gram[r]), w_t[r], **kwargs)
        if agg.dual is not None and agg.clipped_dual is not None and agg.clipped_dual.sum() > 0:
            p, pt = agg.dual.numpy(), agg.clipped_dual.numpy()
            clipped += bool(np.abs(pt / pt.sum() - p / p.sum()).sum() > 1e-9)
        direction[r] = agg.coefficients.numpy() @ grads[r]
    step = problem.lr * direction
    length = np.linalg.norm(step, axis=1, keepdims=True)
    theta = theta - step * np.minimum(1.0, problem.max_step / np.maximum(length, 1e-300))
    if traj is not None:
        traj.append(theta.copy())
    return losses, theta, clipped


@dataclass
class Summary:
    reached: float
    median_steps: float
    mean_gap: float
    median_target: float
    p90_target: float
    clip_fraction: float
    warnings: int


def summarise(problem: Problem, res: RunResult, weights: np.ndarray, steps: int) -> Summary:
    gaps, dists = [], []
    for r in range(len(weights)):
        _, best = problem.weighted_minimisers(weights[r])
        gaps.append(float(weights[r] @ res.losses[r]) - best)
        dists.append(problem.target_distance(res.losses[r], weights[r]))
    return Summary(
        reached=float((res.hit <= steps).mean()),
        median_steps=float(np.median(res.hit)),
        mean_gap=float(np.mean(gaps)),
        median_target=float(np.median(dists)),
        p90_target=float(np.quantile(dists, 0.9)),
        clip_fraction=res.clip_fraction,
        warnings=res.warnings,
    )


def weight_grid(k: int) -> np.ndarray:
    if k == 2:
        return np.array([[0.2, 0.8], [0.5, 0.5], [0.8, 0.2]])
    if k == 3:
        return np.array([[1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2], [0.1, 0.3, 0.6]])
    rng = np.random.default_rng(k)
    return np.concatenate([np.full((1, k), 1.0 / k), rng.dirichlet(np.ones(k), size=2)])


def runs_for(problem: Problem, n_starts: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every start with every weight vector of ``weight_grid``: (starts [R, n], weights [R, k])."""
    starts = problem.starts(n_starts, rng)
    grid = weight_grid(problem.k)
    return np.repeat(starts, len(grid), axis=0), np.tile(grid, (len(starts), 1))


HEADER = (
    f"{'problem':<8s}{'method':<18s}{'reached':>8s}{'med steps':>10s}{'L_w gap':>10s}"
    f"{'target':>8s}{'p90':>7s}{'clip':>6s}{'warn':>6s}"
)


def row(label: str, method: str, s: Summary) -> str:
    return (
        f"{label:<8s}{method:<18s}{s.reached:>8.0%}{s.median_steps:>10.0f}{s.mean_gap:>10.4f}"
        f"{s.median_target:>8.3f}{s.p90_target:>7.3f}{s.clip_fraction:>6.0%}{s.warnings:>6d}"
    )


# ----------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------


def save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=72)
    plt.close(fig)


def plot_toy_trajectories(problem: Problem, trajs: dict[str, np.ndarray], path: Path) -> None:
    xs = np.linspace(-10, 10, 201)
    x1: np.ndarray
    x2: np.ndarray
    x1, x2 = np.meshgrid(xs, xs)
    pts = np.stack([x1.ravel(), x2.ravel()], axis=1)
    lw = problem.evaluate(pts)[0].mean(axis=1).reshape(x1.shape)
    fig, axes = plt.subplots(1, len(trajs), figsize=(3.2 * len(trajs), 3.3), sharey=True)
    for ax, (name, traj) in zip(np.atleast_1d(axes), trajs.items(), strict=True):
        ax.contour(x1, x2, lw, levels=20, cmap="viridis", linewidths=0.6)
        ax.plot([-7, 7], [-8.3552, -8.3552], color="gray", lw=4, alpha=0.5, label="Pareto set")
        for r in range(traj.shape[1]):
            ax.plot(traj[:, r, 0], traj[:, r, 1], color=COLORS[name], lw=1.2)
            ax.plot(*traj[0, r], "ko", ms=4)
            ax.plot(*traj[-1, r], "k*", ms=7)
        ax.set_title(f"{name} (w = 1/2)", fontsize=9)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_aspect("equal")
    fig.suptitle("CAGrad toy: GD from the paper's three starts (contours of L_w)", fontsize=9)
    fig.tight_layout()
    save(fig, path)


def plot_front(problem: Problem, finals: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Objective space (first two objectives): the Pareto front (grey, sampled), the targets of the
    benchmark's weights (★) and every method's end points, coloured by method."""
    front = problem.evaluate(problem.pareto_samples())[0]
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ax.scatter(front[:, 0], front[:, 1], s=3, color="lightgray", label="Pareto front (samples)")
    for name, (losses, _) in finals.items():
        ax.scatter(losses[:, 0], losses[:, 1], s=10, color=COLORS[name], label=name, alpha=0.6)
    targets = np.array(
        [problem.evaluate(problem.weighted_minimisers(w)[0])[0][:, :2] for w in weight_grid(problem.k)],
        dtype=object,
    )
    for t in targets:
        ax.scatter(t[:, 0], t[:, 1], marker="*", s=90, color="k", zorder=5)
    ax.set_xlabel("L1")
    ax.set_ylabel("L2")
    ax.set_title(f"{problem.name}: end points (★ = targets of the weights)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def plot_sweep(
    xs: Sequence[float], series: dict[str, dict[str, list[float]]], xlabel: str, title: str, path: Path
) -> None:
    """series: curve label -> {"steps": [...], "gap": [...]} over xs (median steps, mean L_w gap)."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2))
    for label, vals in series.items():
        method = label.split(" ")[0]
        style = "--" if "ff" in label else "-"
        for ax, key in zip(axes, ("steps", "gap"), strict=True):
            marker = "x" if method == "raco" else "o"
            ax.plot(xs, vals[key], style, marker=marker, ms=4, color=COLORS.get(method, "k"), label=label)
    axes[0].set_ylabel("median steps to M ≤ ε")
    axes[1].set_ylabel("mean L_w − L_w*")
    axes[1].set_yscale("symlog", linthresh=1e-3)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)


# ----------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    instances: int = 10_000
    starts: int = 12
    sweep_starts: int = 4
    steps_scale: float = 1.0
    c_values: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9)
    k_values: tuple[int, ...] = (2, 3, 4, 6, 8)
    noise_values: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)


QUICK = Config(
    instances=300,
    starts=2,
    sweep_starts=1,
    steps_scale=0.02,
    c_values=(0.0, 0.4),
    k_values=(2, 4),
    noise_values=(0.0, 0.2),
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tiny version (seconds), for tests")
    parser.add_argument("--figures", type=Path, default=DEFAULT_FIGURES, help="where the PNGs go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    fig_dir: Path = args.figures
    fig_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def scaled(p: Problem) -> int:
        return max(5, int(p.steps * cfg.steps_scale))

    print_part1(part1(cfg.instances, args.seed))

    # Part 2: every method on every problem.
    problems = [toy_problem(), ff_problem(2), ff_problem(3), quad_problem(3)]
    print(f"\n### 2. GD, c = 0.4 for cagrad/raco; {cfg.starts} starts × 3 weight vectors per problem")
    print("steps to M ≤ ε (median; T + 1 when not reached), mean L_w − L_w*, target distance (median, p90)")
    for p in problems:
        print(f"  {p.name}: k = {p.k}, n = {p.dim}, η = {p.lr}, ε = {p.eps}, T = {scaled(p)}")
    print(HEADER)
    for p in problems:
        rng = np.random.default_rng(args.seed + 1)
        starts, weights = runs_for(p, cfg.starts, rng)
        finals = {}
        for m in METHODS:
            res = gradient_descent(p, m, starts, weights, steps=scaled(p))
            finals[m] = (res.losses, weights)
            print(row(p.name, m, summarise(p, res, weights, scaled(p))))
        if p.k in (2, 3):
            plot_front(p, finals, fig_dir / f"front_{p.name}.png")

    toy = problems[0]
    trajs = {}
    paper_starts = np.array(toy.fixed_starts, dtype=float)
    half = np.full((len(paper_starts), 2), 0.5)
    for m in METHODS:
        trajs[m] = gradient_descent(toy, m, paper_starts, half, steps=scaled(toy), record=True).trajectory
    plot_toy_trajectories(toy, trajs, fig_dir / "toy_trajectories.png")  # type: ignore[arg-type]

    # Part 3a: c sweep.
    print(f"\n### 3a. c sweep ({cfg.sweep_starts} starts × 3 weights)")
    print(HEADER.replace("problem", "c      "))
    c_series: dict[str, dict[str, list[float]]] = {}
    for p in (toy, problems[1]):
        rng = np.random.default_rng(args.seed + 2)
        starts, weights = runs_for(p, cfg.sweep_starts, rng)
        for m in ("cagrad", "raco"):
            key = f"{m} {p.name}"
            c_series[key] = {"steps": [], "gap": []}
            for c in cfg.c_values:
                s = summarise(
                    p, gradient_descent(p, m, starts, weights, c=c, steps=scaled(p)), weights, scaled(p)
                )
                c_series[key]["steps"].append(s.median_steps)
                c_series[key]["gap"].append(s.mean_gap)
                print(row(f"{c:g}", f"{m} {p.name}", s))
    plot_sweep(cfg.c_values, c_series, "c", "c sweep (solid: toy, dashed: ff2)", fig_dir / "sweep_c.png")

    # Part 3b: k sweep.
    print(f"\n### 3b. k sweep on ffk (n = 8, {cfg.sweep_starts} starts × 3 weights, c = 0.4)")
    print(HEADER.replace("problem", "k      "))
    k_series: dict[str, dict[str, list[float]]] = {f"{m} ffk": {"steps": [], "gap": []} for m in METHODS}
    for k in cfg.k_values:
        p = ff_problem(k, steps=300)
        rng = np.random.default_rng(args.seed + 2)
        starts, weights = runs_for(p, cfg.sweep_starts, rng)
        for m in METHODS:
            s = summarise(p, gradient_descent(p, m, starts, weights, steps=scaled(p)), weights, scaled(p))
            k_series[f"{m} ffk"]["steps"].append(s.median_steps)
            k_series[f"{m} ffk"]["gap"].append(s.mean_gap)
            print(row(f"{k}", m, s))
    plot_sweep(cfg.k_values, k_series, "k", "k sweep on ffk (n = 8)", fig_dir / "sweep_k.png")

    # Part 3c: label noise (sign-flip proxy).
    print(
        f"\n### 3c. sign-flip noise q (proxy for label noise; {cfg.sweep_starts} starts × 3 weights, c = 0.4)"
    )
    print(HEADER.replace("problem", "q      "))
    q_series: dict[str, dict[str, list[float]]] = {}
    for p in (toy, problems[1]):
        rng = np.random.default_rng(args.seed + 2)
        starts, weights = runs_for(p, cfg.sweep_starts, rng)
        for m in METHODS:
            key = f"{m} {p.name}"
            q_series[key] = {"steps": [], "gap": []}
            for q in cfg.noise_values:
                noise_rng = np.random.default_rng(args.seed + 5)
                res = gradient_descent(p, m, starts, weights, steps=scaled(p), noise=q, rng=noise_rng)
                s = summarise(p, res, weights, scaled(p))
                q_series[key]["steps"].append(s.median_steps)
                q_series[key]["gap"].append(s.mean_gap)
                print(row(f"{q:g}", key, s))
    plot_sweep(
        cfg.noise_values,
        q_series,
        "q",
        "sign-flip noise (solid: toy, dashed: ff2)",
        fig_dir / "sweep_noise.png",
    )
    print(f"\nwall time {time.perf_counter() - t_start:.0f} s; figures in {fig_dir}")


if __name__ == "__main__":
    main()
