"""Certified minimisation of f(p) = pᵀb + s·sqrt(pᵀHp) over the probability simplex.

Both duals we need have this form (H PSD, s ≥ 0):

* the CAGrad dual (Liu et al. 2021, eq. 7 with a weighted anchor): b = Hw, s = c·sqrt(wᵀHw);
* the MGDA min-norm problem (Désidéri 2012; Sener & Koltun 2018): b = 0, s = 1, since
  argmin sqrt(pᵀHp) = argmin pᵀHp.

f is convex (sqrt(pᵀHp) = ‖Gp‖ is a seminorm). Solvers:

* k = 1: p = 1. k = 2: closed form (docs/algorithm.md §2): with p = (λ, 1−λ), the stationary points of
  h(λ) = b₂ + (b₁−b₂)λ + s·sqrt(Q(λ)) solve a squared quadratic; h is evaluated at its roots in [0, 1],
  at both endpoints and at the min-norm point (where h may be non-smooth), and the best is taken.
* k = 3: exact enumeration (each edge in closed form, the interior face minimiser below, and the
  interior point with Gp = 0 when one exists).
* k ≥ 4: a primal active-set method in the style of Wolfe's min-norm-point algorithm (Wolfe 1976):
  on a face S the minimiser of f over the face's affine hull has the closed form
      u = H_SS⁻¹1, v = H_SS⁻¹b_S, a₁ = 1ᵀu, a₂ = 1ᵀv, a₃ = b_Sᵀv,
      τ = sqrt(a₂² − a₁(a₃ − s²)), λ = (a₂ + τ)/a₁, p_S = (λu − v)/τ,
  (from b_S + s·H_SS p/‖Gp‖ = λ1, 1ᵀp = 1); the method adds the most KKT-violating vertex, and when
  the face minimiser leaves the simplex it steps to the boundary and drops the vanishing coordinates.
  If it cannot certify its answer (singular faces, e.g. duplicated or affinely dependent gradients)
  it falls back to exact enumeration of all faces (k ≤ 16), which also covers optima where Gp = 0.

One zero rule (``is_zero_norm``) decides everywhere whether ‖Gp‖ counts as 0: the solver's
certificate and active set, the enumeration's zero-norm points, and the CAGrad/RACO correction step.
With σ(p) = Σ_i |p_i|·‖g_i‖ (≥ ‖Gp‖ by the triangle inequality; the scale of the rounding in pᵀHp),
    ‖Gp‖ counts as 0  ⇔  pᵀHp ≤ ZERO_NORM_RTOL · σ(p)²,   ZERO_NORM_RTOL = ROUNDING_RTOL / NORM_RTOL,
so that above it the rounding of a float64 Gram matrix (ROUNDING_RTOL · σ² in pᵀHp) moves ‖Gp‖ by at
most NORM_RTOL / 2 relative (the precision promised for ‖d − g₀‖ = c‖g₀‖).

Every answer is certified by weak duality: f(p) = max_{yᵀHy≤1} pᵀ(b + s·Hy), so for any such y
    f* ≥ min_i (b + s·Hy)_i   and   gap(p) = f(p) − max_y min_i (b + s·Hy)_i ≥ f(p) − f*.
Where ‖Gp‖ is not 0, y = p/‖Gp‖ gives the Frank–Wolfe gap ∇f(p)ᵀp − min_i ∇f(p)_i, required to be
≤ 1e-9 · (max|b| + s·max sqrt(H_ii)). Where it is 0 (f has a kink), three y are tried — y = 0, the
face's KKT multiplier, and p/‖Gp‖ with an explicit rounding allowance — and the required bound is
widened by the rounding floor 2s·sqrt(ROUNDING_RTOL)·σ(p), the most rounding can put into s‖Gp‖.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

GAP_RTOL = 1e-9
MAX_ENUMERATION_K = 16
ROUNDING_RTOL = 1e-14  # rounding of pᵀHp from a float64 Gram matrix, relative to σ(p)² (≈ 2k·2⁻⁵³ + H's own)
NORM_RTOL = 1e-8  # relative precision promised for ‖Gp‖ wherever the zero rule calls it nonzero
ZERO_NORM_RTOL = ROUNDING_RTOL / NORM_RTOL  # 1e-6: ‖Gp‖ ≤ 1e-3·σ(p) counts as 0
_MAX_ACTIVE_SET_ITERS = 500
_NEWTON_STEPS = 12


class DualSolverError(RuntimeError):
    """The dual could not be solved to a certified optimum."""


@dataclass(frozen=True)
class SimplexSolution:
    """Minimiser p of f on the simplex, its value f(p), the certified gap, and ‖Gp‖."""

    p: np.ndarray
    value: float
    gap: float
    norm: float


class _Assessment(NamedTuple):
    value: float  # f(p)
    gap: float  # certified upper bound on f(p) − f*
    norm2: float  # pᵀHp
    slack: float  # rounding floor added to the required gap (0 where the zero rule calls ‖Gp‖ nonzero)


def spread(p: np.ndarray, h: np.ndarray) -> float:
    """σ(p) = Σ_i |p_i|·sqrt(H_ii) = Σ_i |p_i|·‖g_i‖ ≥ ‖Gp‖ (triangle inequality): the scale of the
    rounding in pᵀHp, since |H_ij| ≤ ‖g_i‖‖g_j‖ bounds every term p_i p_j H_ij."""
    return _spread(p.tolist(), np.diagonal(h).tolist())


def _spread(pl: list[float], diag: list[float]) -> float:
    return sum(abs(x) * math.sqrt(max(d, 0.0)) for x, d in zip(pl, diag, strict=True))


def is_zero_norm(norm2: float, sigma: float) -> bool:
    """The zero rule: ‖Gp‖² = norm2 counts as 0 when norm2 ≤ ZERO_NORM_RTOL·σ(p)², i.e. ‖Gp‖ ≤ 1e-3·σ(p)
    (the gradients weighted by p cancel to a thousandth of their summed lengths).

    Above it, rounding in pᵀHp (≤ ROUNDING_RTOL·σ²) moves ‖Gp‖ by at most NORM_RTOL/2 relative. It is
    the one rule by which the solver, its certificate, the enumeration and the CAGrad/RACO correction
    step decide that ‖Gp‖ vanishes; σ is from ``spread``."""
    return norm2 <= ZERO_NORM_RTOL * sigma * sigma


# The final checks below run in plain Python floats: for the small k of multi-objective alignment
# they are several times faster than numpy's per-call overhead (the per-step budget is ~100 µs).


def objective(p: np.ndarray, b: np.ndarray, h: np.ndarray, s: float) -> float:
    """f(p) = pᵀb + s·sqrt(max(pᵀHp, 0))."""
    pl = p.tolist()
    hp = [sum(hij * y for hij, y in zip(row, pl, strict=True)) for row in h.tolist()]
    norm2 = sum(x * y for x, y in zip(pl, hp, strict=True))
    return sum(x * y for x, y in zip(pl, b.tolist(), strict=True)) + s * math.sqrt(max(norm2, 0.0))


def _tolerance(b: np.ndarray, h: np.ndarray, s: float) -> float:
    """1e-9 × the size of the gradient entries of f: max|b_i| + s·max‖g_i‖."""
    diag = max(math.sqrt(max(x, 0.0)) for x in np.diagonal(h).tolist())
    return GAP_RTOL * (max(abs(x) for x in b.tolist()) + s * diag) + 1e-300


def _assess(p: np.ndarray, b: np.ndarray, h: np.ndarray, s: float) -> _Assessment:
    """f(p), a certified upper bound on f(p) − f*, pᵀHp and the rounding slack, in one pass.

    Where the zero rule calls ‖Gp‖ nonzero the bound is the Frank–Wolfe gap ∇f(p)ᵀp − min_i ∇f(p)_i
    (weak duality with y = p/‖Gp‖; its rounding, ≤ s·ROUNDING_RTOL·σ²/‖Gp‖ ≤ 1e-11·s·σ, is far below
    the tolerance). Where it calls ‖Gp‖ zero, see ``_kink_assessment``."""
    pl, bl, hl = p.tolist(), b.tolist(), h.tolist()
    hp = [sum(hij * pj for hij, pj in zip(row, pl, strict=True)) for row in hl]
    norm2 = max(sum(x * y for x, y in zip(pl, hp, strict=True)), 0.0)
    linear = sum(x * y for x, y in zip(pl, bl, strict=True))
    if is_zero_norm(norm2, _spread(pl, [row[i] for i, row in enumerate(hl)])):
        return _kink_assessment(p, b, h, s, norm2)
    scale = s / math.sqrt(norm2)
    grad = [bi + scale * x for bi, x in zip(bl, hp, strict=True)]
    gap = sum(x * y for x, y in zip(grad, pl, strict=True)) - min(grad)
    return _Assessment(linear + s * math.sqrt(norm2), gap, norm2, 0.0)


def _kink_assessment(p: np.ndarray, b: np.ndarray, h: np.ndarray, s: float, norm2: float) -> _Assessment:
    """Certificate where the zero rule calls ‖Gp‖ 0 (f may have a kink there, and p/‖Gp‖ is rounding).

    With e = ROUNDING_RTOL·σ(p)², the best of three weak-duality bounds f* ≥ min_i (b + s·Hy)_i: y = 0,
    y = p/sqrt(pᵀHp + e) (the Frank–Wolfe one, made safe against rounding by ``_dual_bound``) and the
    face's KKT multiplier (``_kink_multiplier``); the value is rounded up, f(p) ≤ pᵀb + s·sqrt(pᵀHp + e).
    The slack 2s·sqrt(e) is what rounding alone can put between the two."""
    e = ROUNDING_RTOL * spread(p, h) ** 2
    support = np.flatnonzero(p)
    lower = float(b.min())
    if s > 0.0 and norm2 + e > 0.0:
        lower = max(lower, _dual_bound(p[support] / math.sqrt(norm2 + e), support, b, h, s))
    y = _kink_multiplier(p, support, b, h, s) if s > 0.0 else None
    if y is not None:
        lower = max(lower, _dual_bound(y, support, b, h, s))
    linear = float(p @ b)
    upper = linear + s * math.sqrt(norm2 + e)
    return _Assessment(linear + s * math.sqrt(norm2), upper - lower, norm2, 2.0 * s * math.sqrt(e))


def _kink_multiplier(
    p: np.ndarray, support: np.ndarray, b: np.ndarray, h: np.ndarray, s: float
) -> np.ndarray | None:
    """KKT multiplier of a point with Gp = 0 on its face S = ``support``: the y (on S) of smallest
    ‖Σ_j y_j g_j‖ with (b + s·Hy)_i = pᵀb for every i ∈ S, i.e. y = H_SS⁺(pᵀb − b_S)/s, where the
    pseudo-inverse drops the eigen-directions v of H_SS that the zero rule calls Gv = 0. None if all."""
    hs = h[np.ix_(support, support)]
    evals, evecs = np.linalg.eigh(hs)
    keep = [j for j, lam in enumerate(evals.tolist()) if not is_zero_norm(lam, spread(evecs[:, j], hs))]
    if not keep:
        return None
    v = evecs[:, keep]
    return v @ ((v.T @ ((float(p @ b) - b[support]) / s)) / evals[keep])


def _dual_bound(y: np.ndarray, support: np.ndarray, b: np.ndarray, h: np.ndarray, s: float) -> float:
    """Weak-duality bound f* ≥ min_i (b + s·Hy)_i for y supported on ``support``, rounded down: y is
    scaled so that yᵀHy ≤ 1 even after rounding (yᵀHy + ROUNDING_RTOL·σ(y)² ≤ 1), and each (Hy)_i is
    lowered by its rounding bound ROUNDING_RTOL·‖g_i‖·σ(y)."""
    hy = h[:, support] @ y
    sigma = spread(y, h[np.ix_(support, support)])
    bound2 = float(y @ hy[support]) + ROUNDING_RTOL * sigma * sigma
    scale = s / math.sqrt(bound2) if bound2 > 1.0 else s
    norms = np.sqrt(np.clip(np.diagonal(h), 0.0, None))
    return float((b + scale * (hy - ROUNDING_RTOL * sigma * norms)).min())


def _certified(result: _Assessment, tol: float) -> bool:
    return result.gap <= tol + result.slack


def certificate(p: np.ndarray, b: np.ndarray, h: np.ndarray, s: float) -> float:
    """Certified upper bound on f(p) − f* (see ``_assess``)."""
    return _assess(p, b, h, s).gap


def solve(b: np.ndarray, h: np.ndarray, s: float) -> SimplexSolution:
    """Certified argmin over the simplex of pᵀb + s·sqrt(pᵀHp).

    When even exact enumeration cannot certify the answer (gap above 1e-9 relative, plus the rounding
    slack where ‖Gp‖ is 0 by the zero rule), the best point found is returned with its certified gap
    and a RuntimeWarning is issued.
    """
    k = h.shape[0]
    tol = _tolerance(b, h, s)
    p: np.ndarray | None
    if k == 1:
        p = np.ones(1)
    elif k == 2:
        p = _solve_two(b, h, s)
    elif k == 3:
        p = _solve_three(b, h, s)
    else:
        p = _active_set(b, h, s, tol)
    result = None if p is None else _assess(p, b, h, s)
    # p (and so result) is None only for k >= 3, where a singular face stopped the solver.
    if p is None or result is None or (k >= 3 and not _certified(result, tol)):
        p = _best_of(p, _enumerate(b, h, s, allow_fail=p is not None), b, h, s)
        result = _assess(p, b, h, s)
    if not _certified(result, tol):
        warnings.warn(
            f"CAGrad/MGDA dual certified only to gap {result.gap:.3g} (required {tol + result.slack:.3g}): "
            "the Gram matrix is numerically singular; the best point found is used",
            RuntimeWarning,
            stacklevel=3,
        )
    return SimplexSolution(p=p, value=result.value, gap=result.gap, norm=math.sqrt(result.norm2))


def _best_of(
    p: np.ndarray | None, q: np.ndarray | None, b: np.ndarray, h: np.ndarray, s: float
) -> np.ndarray:
    if p is None or q is None:
        best = q if p is None else p
        assert best is not None, "_enumerate gives up (None) only when told that p exists"
        return best
    return p if objective(p, b, h, s) <= objective(q, b, h, s) else q


def _solve_two(b: np.ndarray, h: np.ndarray, s: float) -> np.ndarray:
    """k = 2 in closed form (see module docstring)."""
    p1, p2, _ = _best_on_edge(float(b[0]), float(b[1]), float(h[0, 0]), float(h[0, 1]), float(h[1, 1]), s)
    return np.array([p1, p2])


def _edge_value(lam: float, b1: float, b2: float, h11: float, h12: float, h22: float, s: float) -> float:
    mu = 1.0 - lam
    q = lam * lam * h11 + 2.0 * lam * mu * h12 + mu * mu * h22
    return lam * b1 + mu * b2 + s * math.sqrt(max(q, 0.0))


def _best_on_edge(
    b1: float, b2: float, h11: float, h12: float, h22: float, s: float
) -> tuple[float, float, float]:
    """(p₁, p₂, value) minimising h(λ) = λb₁ + (1−λ)b₂ + s·sqrt(Q(λ)) over λ = p₁ ∈ [0, 1]: the best
    of the endpoints, the min-norm point (where h may be non-smooth) and the roots of the squared
    stationarity equation. An interior answer is refined in the coordinate that is the smaller one,
    so that a tiny p₂ = 1 − λ keeps its relative precision."""
    lam, value = _edge_minimum(b1, b2, h11, h12, h22, s)
    if 0.5 < lam < 1.0:  # the same edge seen from the other end: μ = 1 − λ, b and H swapped
        a = h11 - 2.0 * h12 + h22
        mu = _newton_polish(1.0 - lam, a, 2.0 * h12 - 2.0 * h11, h11, b2 - b1, s)
        return 1.0 - mu, mu, value
    return lam, 1.0 - lam, value


def _edge_minimum(b1: float, b2: float, h11: float, h12: float, h22: float, s: float) -> tuple[float, float]:
    """(λ, h(λ)) of the best candidate on the edge (see ``_best_on_edge``)."""
    a, bq = h11 - 2.0 * h12 + h22, 2.0 * h12 - 2.0 * h22  # Q(λ) = aλ² + bq·λ + h22
    delta = b1 - b2
    candidates = [0.0, 1.0]
    if a > 0.0:
        candidates.append(min(max(-bq / (2.0 * a), 0.0), 1.0))
    # squared stationarity: a(s²a − δ²)λ² + bq(s²a − δ²)λ + (s²bq²/4 − δ²h22) = 0
    e = s * s * a - delta * delta
    roots = _real_roots(a * e, bq * e, s * s * bq * bq / 4.0 - delta * delta * h22)
    candidates += [_newton_polish(r, a, bq, h22, delta, s) if 0.0 < r < 1.0 else r for r in roots]
    return min(
        ((lam, _edge_value(lam, b1, b2, h11, h12, h22, s)) for lam in candidates if 0.0 <= lam <= 1.0),
        key=lambda pair: pair[1],
    )


def _newton_polish(lam: float, a: float, bq: float, h22: float, delta: float, s: float) -> float:
    """A root of the squared stationarity equation, refined by Newton steps on h'(λ) = 0 itself:
    h' = δ + s(2aλ + b_q)/(2√Q), h'' = s(4aQ − (2aλ + b_q)²)/(4Q^{3/2}). Squaring loses digits when
    the gradients' scales differ by orders of magnitude; a few steps recover them. Run to convergence:
    a spurious root of the squared equation (h' ≠ 0) is carried into the true one's basin, and must not
    stop short of it, where its value ties with the true root's and its certificate fails."""
    for _ in range(_NEWTON_STEPS):
        q = a * lam * lam + bq * lam + h22
        slope = 2.0 * a * lam + bq
        curvature = s * (4.0 * a * q - slope * slope)
        if q <= 0.0 or curvature <= 0.0:  # guards of √Q and of the division
            break
        step = (delta + s * slope / (2.0 * math.sqrt(q))) * 4.0 * q**1.5 / curvature
        if not 0.0 <= lam - step <= 1.0:
            break
        lam -= step
        if abs(step) <= 1e-15 * lam:
            break
    return lam


def _solve_three(b: np.ndarray, h: np.ndarray, s: float) -> np.ndarray:
    """k = 3 exactly. When H is invertible, f is strictly convex on the plane 1ᵀp = 1: its minimiser q
    there (closed form, H inverted by its adjugate) is the answer if it lies in the simplex; otherwise
    the answer lies on an edge p_i = 0 with q_i < 0 (a feasible descent direction towards q would exist
    otherwise), solved in closed form. When H is singular: every edge, and the interior point with
    Gp = 0 if there is one."""
    bl, hl = b.tolist(), h.tolist()
    inverse = _inverse3(hl)
    edges: list[int] = [0, 1, 2]  # index i names the edge p_i = 0
    candidates: list[tuple[list[float], float]] = []
    if inverse is None:  # points the zero rule calls Gp = 0
        candidates.extend((p.tolist(), objective(p, b, h, s)) for p in _zero_norm_points(h, [0, 1, 2]))
    else:
        q = _interior_minimiser3(inverse, bl, s)
        if q is not None and min(q) >= 0.0:
            return np.array(q)
        if q is not None:
            edges = [i for i in range(3) if q[i] < 0.0]
    for i in edges:
        j, l = [x for x in range(3) if x != i]
        pj, pl, value = _best_on_edge(bl[j], bl[l], hl[j][j], hl[j][l], hl[l][l], s)
        p = [0.0, 0.0, 0.0]
        p[j], p[l] = pj, pl
        candidates.append((p, value))
    return np.array(min(candidates, key=lambda pair: pair[1])[0])


def _interior_minimiser3(inverse: list[list[float]], bl: list[float], s: float) -> list[float] | None:
    """The face formula of the module docstring on the full face of k = 3, in plain floats."""
    u = [sum(row) for row in inverse]
    v = [sum(r * x for r, x in zip(row, bl, strict=True)) for row in inverse]
    a1, a2, a3 = sum(u), sum(v), sum(x * y for x, y in zip(bl, v, strict=True))
    disc = a2 * a2 - a1 * (a3 - s * s)
    if not (a1 > 0.0 and disc > 0.0):
        return None
    tau = math.sqrt(disc)
    lam = (a2 + tau) / a1
    return [(lam * ui - vi) / tau for ui, vi in zip(u, v, strict=True)]


def _inverse3(m: list[list[float]]) -> list[list[float]] | None:
    """Inverse of a symmetric PSD 3×3 matrix by its adjugate; None when (nearly) singular."""
    (a, b, c), (_, d, e), (_, _, f) = m
    cof = [
        [d * f - e * e, c * e - b * f, b * e - c * d],
        [0.0, a * f - c * c, b * c - a * e],
        [0.0, 0.0, a * d - b * b],
    ]
    det = a * cof[0][0] + b * cof[0][1] + c * cof[0][2]
    if not det > 1e-10 * a * d * f:
        return None
    cof[1][0], cof[2][0], cof[2][1] = cof[0][1], cof[0][2], cof[1][2]
    return [[x / det for x in row] for row in cof]


def _real_roots(qa: float, qb: float, qc: float) -> list[float]:
    """Real roots of qa·x² + qb·x + qc (numerically stable form; [] when identically zero)."""
    scale = max(abs(qa), abs(qb), abs(qc))
    if scale == 0.0:
        return []
    qa, qb, qc = qa / scale, qb / scale, qc / scale
    if abs(qa) < 1e-14:
        return [-qc / qb] if abs(qb) > 1e-14 else []
    disc = qb * qb - 4.0 * qa * qc
    if disc < 0.0:
        return [-qb / (2.0 * qa)] if disc > -1e-12 else []
    q = -0.5 * (qb + math.copysign(math.sqrt(disc), qb))
    roots = [q / qa]
    if q != 0.0:
        roots.append(qc / q)
    return roots


def _face_minimiser(b: np.ndarray, h: np.ndarray, s: float, face: list[int]) -> np.ndarray | None:
    """Minimiser of f over the affine hull of a face (closed form above); None if singular/unbounded."""
    hs = h[np.ix_(face, face)]
    rhs = np.stack([np.ones(len(face)), b[face]], axis=1)
    try:
        uv = np.linalg.solve(hs, rhs)
    except np.linalg.LinAlgError:
        return None
    u, v = uv[:, 0], uv[:, 1]
    a1, a2, a3 = float(u.sum()), float(v.sum()), float(b[face] @ v)
    disc = a2 * a2 - a1 * (a3 - s * s)
    if not (a1 > 0.0 and disc > 0.0 and math.isfinite(disc)):
        return None
    tau = math.sqrt(disc)
    p = np.zeros(h.shape[0])
    p[face] = ((a2 + tau) / a1 * u - v) / tau
    return p if np.isfinite(p).all() else None


def _active_set(b: np.ndarray, h: np.ndarray, s: float, tol: float) -> np.ndarray | None:
    """Wolfe-style primal active-set method, started on the full face from the barycentre (one solve
    when the optimum is interior, as for nearly orthogonal gradients) or, when that face is singular,
    from the best vertex. None when it meets a singular face."""
    k = h.shape[0]
    p = _descend_in_face(b, h, s, list(range(k)), np.full(k, 1.0 / k))
    if p is None:
        start = int(np.argmin(b + s * np.sqrt(np.clip(np.diag(h), 0.0, None))))
        p = np.eye(k)[start]
    for _ in range(_MAX_ACTIVE_SET_ITERS):
        hp = h @ p
        norm2 = float(p @ hp)
        if is_zero_norm(norm2, spread(p, h)) and (norm2 <= 0.0 or _certified(_assess(p, b, h, s), tol)):
            return p  # a certified kink, or no gradient to follow (the caller checks and enumerates)
        grad = b + (s / math.sqrt(norm2)) * hp
        j = int(np.argmin(grad))
        face = [int(i) for i in np.flatnonzero(p)]
        if float(grad @ p) - float(grad[j]) <= tol or j in face:
            return p
        p = _descend_in_face(b, h, s, [*face, j], p)
        if p is None:
            return None
    return None


def _descend_in_face(
    b: np.ndarray, h: np.ndarray, s: float, face: list[int], p: np.ndarray
) -> np.ndarray | None:
    """From a feasible p supported in ``face``, move to the face's minimiser; when it leaves the
    simplex, stop at the boundary, drop the vanishing coordinates and repeat. None if singular."""
    while True:
        q = _face_minimiser(b, h, s, face)
        if q is None:
            return None
        if (q[face] > 0.0).all():
            return q
        idx = np.array(face)
        shrink = q[idx] <= 0.0
        steps = p[idx][shrink] / (p[idx][shrink] - q[idx][shrink])
        p = p + float(steps.min()) * (q - p)
        face = [i for i in face if p[i] > 1e-15]
        keep: np.ndarray = np.zeros(len(p), dtype=bool)
        keep[face] = True
        p = np.where(keep, np.clip(p, 0.0, None), 0.0)
        p = p / p.sum()


def _enumerate(b: np.ndarray, h: np.ndarray, s: float, allow_fail: bool = False) -> np.ndarray | None:
    """Exact minimiser by enumerating every face: vertices, the face minimisers that are feasible, and
    the points the zero rule calls Gp = 0 (``_zero_norm_points``); among the candidates whose values tie
    with the lowest to within the tolerance, the one with the smallest certified gap.
    Limited to k ≤ MAX_ENUMERATION_K (2^k faces); beyond, None if ``allow_fail`` else an error."""
    k = h.shape[0]
    if k > MAX_ENUMERATION_K:
        if allow_fail:
            return None
        raise DualSolverError(
            f"the active-set dual solver met a singular face and exact enumeration is limited to "
            f"k <= {MAX_ENUMERATION_K} (k = {k}); remove duplicated or linearly dependent objectives"
        )
    candidates = list(np.eye(k))
    for size in range(2, k + 1):
        for combination in itertools.combinations(range(k), size):
            face = list(combination)
            q = _face_minimiser(b, h, s, face)
            if q is not None and (q >= 0.0).all():
                candidates.append(q)
            candidates.extend(_zero_norm_points(h, face))
    values = [objective(p, b, h, s) for p in candidates]
    best = min(values) + _tolerance(b, h, s)  # rounding can reorder the candidates within tolerance:
    ties = [p for p, v in zip(candidates, values, strict=True) if v <= best]  # keep the best certified
    return min(ties, key=lambda p: _assess(p, b, h, s).gap)


def _zero_norm_points(h: np.ndarray, face: list[int]) -> list[np.ndarray]:
    """Simplex points p supported on ``face`` that the zero rule calls Gp = 0 (at most one per face).

    The candidate is the eigenvector of the smallest eigenvalue of the correlation matrix
    C = D^{-1/2} H_SS D^{-1/2} (unit diagonal, so that the gradients' norms do not matter; Hv = 0 ⇔
    C D^{1/2} v = 0), kept when it is one-signed and ``is_zero_norm`` accepts it. A zero gradient
    (H_ii = 0) is left to its vertex, which is always a candidate."""
    hs = h[np.ix_(face, face)]
    scale = np.sqrt(np.clip(np.diag(hs), 0.0, None))
    if (scale <= 0.0).any():  # division guard: a vertex with g_i = 0 is its own zero-norm point
        return []
    vec = np.linalg.eigh(hs / np.outer(scale, scale))[1][:, 0] / scale
    total = vec.sum()
    if abs(total) <= 1e-12 * np.abs(vec).sum():
        return []
    vec = vec / total
    if (vec < -1e-12).any():
        return []
    p = np.zeros(h.shape[0])
    p[face] = np.clip(vec, 0.0, None)
    p /= p.sum()
    return [p] if is_zero_norm(float(p @ h @ p), spread(p, h)) else []
