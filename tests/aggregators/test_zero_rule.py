"""The zero rule for ‖Gp‖ (one rule for the solver, its certificate and the correction step), the
coefficient bound it implies, and the honesty of ``dual_gap`` — checked against float64 formulas
computed here from the gradients G themselves, never from the code under test."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from raco.aggregators import cagrad, mgda, min_norm, raco
from raco.aggregators._simplex import ZERO_NORM_RTOL, certificate, is_zero_norm, spread
from raco.aggregators.cagrad import correction_coefficients

from .conftest import dual_objective, reference_simplex_min

# The issue's example: g₂ = −g₁ and w₁ = w₂, so the clipped dual p̃ = (0.3, 0.3, 0, 0) has G p̃ = 0.
ISSUE_G = np.array([[0.3, 0.7, 0.1], [-0.3, -0.7, -0.1], [0.2, 0.1, 0.9], [0.5, -0.2, 0.4]])
ISSUE_W = np.array([0.3, 0.3, 0.2, 0.2])
MIN_NONZERO = math.sqrt(ZERO_NORM_RTOL)  # the smallest ‖Gp‖ / Σ p_i‖g_i‖ the rule calls nonzero


def _gram(g: np.ndarray) -> torch.Tensor:
    return torch.tensor(g @ g.T)


def _correction_error(g: np.ndarray, w: np.ndarray, a: np.ndarray, c: float) -> float:
    """| ‖d − g₀‖ − c‖g₀‖ | / (c‖g₀‖) with d = Σ a_i g_i and g₀ = Σ w_i g_i, in float64 from G."""
    g0 = w @ g
    target = c * np.linalg.norm(g0)
    return abs(np.linalg.norm(a @ g - g0) - target) / target


@st.composite
def near_degenerate(draw) -> tuple[np.ndarray, np.ndarray, float]:
    """(G, w, c) with k ∈ 2..8: Gaussian gradients, then on demand near-opposite pairs g_j = −α·g_i + ε·v,
    near-duplicates g_j = α·g_i + ε·v (ε = 10^−U(1, 16)·‖g_i‖, possibly 0), rows rescaled by 10^U(−6, 6),
    weights with zeros; or the issue's example, perturbed by such an ε."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = draw(st.floats(0.01, 0.99))
    eps = 0.0 if draw(st.booleans()) else 10.0 ** -draw(st.floats(1.0, 16.0))
    if draw(st.integers(0, 5)) == 0:
        g = ISSUE_G.copy()
        g[1] = -g[0] + eps * np.linalg.norm(g[0]) * rng.standard_normal(3)
        return g, ISSUE_W.copy(), c
    k = draw(st.integers(2, 8))
    g = rng.standard_normal((k, draw(st.integers(1, k + 4))))
    for _ in range(draw(st.integers(0, k // 2))):
        i, j = rng.choice(k, size=2, replace=False)
        alpha = rng.uniform(0.5, 2.0) * (-1.0 if draw(st.booleans()) else 1.0)
        g[j] = alpha * g[i] + eps * np.linalg.norm(g[i]) * rng.standard_normal(g.shape[1])
    if draw(st.booleans()):
        g *= 10.0 ** rng.uniform(-6.0, 6.0, size=(k, 1))
    w = rng.dirichlet(np.ones(k))
    if draw(st.booleans()):
        w[rng.random(k) < 0.4] = 0.0
        w = np.full(k, 1.0 / k) if w.sum() == 0.0 else w / w.sum()
    return g, w, c


@settings(max_examples=400, deadline=None)
@given(instance=near_degenerate())
def test_correction_length_or_degenerate_on_near_degenerate_inputs(instance) -> None:
    """For any input: `degenerate` (then a = w exactly), or ‖d − g₀‖ = c‖g₀‖ to 1e-8 relative and
    a − w = (c‖g₀‖ / ‖G p̃‖)·p̃ with p̃ the (clipped) dual — for CAGrad and RACO."""
    g, w, c = instance
    gram, weights = _gram(g), torch.tensor(w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a loose certificate may warn; tested below
        results = {"cagrad": cagrad(gram, weights, c=c), "raco": raco(gram, weights, c=c)}
    for name, agg in results.items():
        a = agg.coefficients.numpy()
        assert np.isfinite(a).all(), name
        if agg.degenerate:
            np.testing.assert_allclose(a, w, rtol=1e-15, atol=0.0, err_msg=name)
            continue
        assert _correction_error(g, w, a, c) <= 1e-8, name
        p = (agg.clipped_dual if name == "raco" else agg.dual).numpy()
        expected = w + c * np.linalg.norm(w @ g) / np.linalg.norm(p @ g) * p
        np.testing.assert_allclose(a, expected, rtol=1e-8, atol=0.0, err_msg=name)


@settings(max_examples=400, deadline=None)
@given(instance=near_degenerate())
def test_coefficients_are_bounded_by_the_zero_rule(instance) -> None:
    """docs/aggregators.md: when not degenerate, ‖G p̃‖ > m = 1e-3·Σ_j p̃_j‖g_j‖, hence
    |a_i − w_i| ≤ c‖g₀‖·p̃_i / m  and  |a_i| ≤ 1 + c‖g₀‖ / m."""
    g, w, c = instance
    gram, weights = _gram(g), torch.tensor(w)
    norms, anchor = np.linalg.norm(g, axis=1), c * np.linalg.norm(w @ g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        results = {"cagrad": cagrad(gram, weights, c=c), "raco": raco(gram, weights, c=c)}
    for name, agg in results.items():
        if agg.degenerate:
            continue
        a = agg.coefficients.numpy()
        p = (agg.clipped_dual if name == "raco" else agg.dual).numpy()
        m = MIN_NONZERO * float(p @ norms)
        assert np.linalg.norm(p @ g) > m * (1 - 1e-8), name
        assert (np.abs(a - w) <= anchor * p / m * (1 + 1e-8) + 1e-15).all(), name  # + w's renormalising
        assert (np.abs(a) <= 1 + anchor / m * (1 + 1e-8)).all(), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", [raco, cagrad])
def test_issue_example_is_degenerate_with_weights(method, dtype) -> None:
    """The issue's example returned a ≈ (2.8e15, 2.8e15, .2, .2) with degenerate=False. Here p =
    (½, ½, 0, 0) and p̃ = (0.3, 0.3, 0, 0) both give G p = 0: a = w, degenerate, certified (no
    warning), and the dual is optimal: its value matches a brute-force minimum."""
    gram, w = _gram(ISSUE_G).to(dtype), torch.tensor(ISSUE_W)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        agg = method(gram, w, c=0.4)
    assert agg.degenerate
    np.testing.assert_allclose(agg.coefficients.numpy(), ISSUE_W, rtol=1e-7)
    np.testing.assert_allclose(agg.dual.numpy(), [0.5, 0.5, 0.0, 0.0], atol=1e-12)
    h = ISSUE_G @ ISSUE_G.T
    b, s = h @ ISSUE_W, 0.4 * np.linalg.norm(ISSUE_W @ ISSUE_G)
    _, ref = reference_simplex_min(b, h, s)
    ours = dual_objective(agg.dual.numpy(), b, h, s)
    assert ours - ref <= agg.dual_gap + 1e-12  # the gap bounds the true suboptimality
    assert agg.dual_gap <= 1e-7 * s  # …and is tight: the kink is certified (min b_i alone gives 0.054)


def test_zero_rule_threshold_is_relative_to_the_weighted_norms() -> None:
    """g₁ = (1, 0), g₂ = (−1, t), p = (½, ½): ‖Gp‖ = t/2 and σ = Σ p_i‖g_i‖ = (1 + sqrt(1 + t²))/2.
    The threshold ‖Gp‖ = 1e-3·σ sits at t ≈ 2e-3, whatever the common scale of the gradients; and a
    lone tiny gradient is not 'zero' just because another gradient is large."""
    for scale in (1e-6, 1.0, 1e6):
        for t, zero in ((1.99e-3, True), (2.01e-3, False)):
            g = scale * np.array([[1.0, 0.0], [-1.0, t]])
            p = np.array([0.5, 0.5])
            h = g @ g.T
            sigma = 0.5 * scale * (1.0 + math.hypot(1.0, t))
            assert spread(p, h) == pytest.approx(sigma, rel=1e-12)
            assert is_zero_norm(float(p @ h @ p), spread(p, h)) is zero, (scale, t)
    g = np.array([[1e-6, 0.0], [0.0, 1e6]])
    h, p = g @ g.T, np.array([1.0, 0.0])
    assert not is_zero_norm(float(p @ h @ p), spread(p, h))


def test_correction_step_uses_the_zero_rule_and_its_bound() -> None:
    """correction_coefficients on the pair above with s = 0.1: None just below the threshold; just
    above, a = w + s·p/‖Gp‖ (computed from G) and |a_i − w_i| < s·p_i / (1e-3·σ)."""
    w, p, s = np.array([0.5, 0.5]), np.array([0.5, 0.5]), 0.1
    below = np.array([[1.0, 0.0], [-1.0, 1.99e-3]])
    assert correction_coefficients(w, p, below @ below.T, s) is None
    above = np.array([[1.0, 0.0], [-1.0, 2.01e-3]])
    a = correction_coefficients(w, p, above @ above.T, s)
    gp = np.linalg.norm(p @ above)
    np.testing.assert_allclose(a, w + s * p / gp, rtol=1e-9)
    sigma = float(p @ np.linalg.norm(above, axis=1))
    assert (np.abs(a - w) < s * p / (MIN_NONZERO * sigma)).all()
    assert np.abs(a - w).max() > 0.9 * s * 0.5 / (MIN_NONZERO * sigma)  # the bound is nearly attained


def test_loose_certificate_warns_and_reports_an_honest_gap() -> None:
    """The issue's example with g₂ = −g₁ + 1e-6·v: the dual's optimum is a near-kink whose ‖Gp‖ ≈
    2e-6·Σ p_i‖g_i‖ is zero by the rule, so the direction p/‖Gp‖ is not known to the precision a 1e-9
    certificate needs. The solver says so (RuntimeWarning); its dual_gap still bounds the true
    suboptimality (brute force), and CAGrad falls back to a = w."""
    g = ISSUE_G.copy()
    g[1] = -g[0] + 1e-6 * np.array([1.0, 2.0, 3.0])
    h = g @ g.T
    b, s = h @ ISSUE_W, 0.4 * np.linalg.norm(ISSUE_W @ g)
    with pytest.warns(RuntimeWarning, match="certified only to gap"):
        agg = cagrad(_gram(g), torch.tensor(ISSUE_W), c=0.4)
    assert agg.degenerate
    np.testing.assert_array_equal(agg.coefficients.numpy(), ISSUE_W)
    _, ref = reference_simplex_min(b, h, s)
    ours = dual_objective(agg.dual.numpy(), b, h, s)
    assert ours - ref <= agg.dual_gap
    assert agg.dual_gap > 1e-9 * (np.abs(b).max() + s * math.sqrt(h.diagonal().max()))


@settings(max_examples=60, deadline=None)
@given(instance=near_degenerate(), seed=st.integers(0, 2**32 - 1), mgda_problem=st.booleans())
def test_certificate_bounds_the_true_gap_at_any_point(instance, seed: int, mgda_problem: bool) -> None:
    """certificate(p) ≥ f(p) − f* for arbitrary simplex points p (f* from the brute-force solver) —
    random points, the two-point kink p = (½, ½, 0, …) of a near-opposite pair, and vertices."""
    g, w, c = instance
    h = g @ g.T
    b, s = (np.zeros(len(w)), 1.0) if mgda_problem else (h @ w, c * float(np.linalg.norm(w @ g)))
    if s == 0.0:
        return
    _, ref = reference_simplex_min(b, h, s)
    rng = np.random.default_rng(seed)
    k = len(w)
    kink = np.zeros(k)
    kink[:2] = 0.5
    for p in (rng.dirichlet(np.ones(k)), kink, np.eye(k)[rng.integers(k)]):
        slack = 1e-12 * (np.abs(b).max() + s * math.sqrt(h.diagonal().max()))
        assert certificate(p, b, h, s) >= dual_objective(p, b, h, s) - ref - slack


@pytest.mark.parametrize("eps", [1e-4, 1e-5, 1e-6])
def test_min_norm_stays_accurate_below_the_zero_threshold(eps: float) -> None:
    """MGDA divides by nothing, and its certificate at a point the rule calls zero keeps using
    p/‖Gp‖ with a rounding allowance: M below 1e-3·σ is still found to 1e-9 of the gradient scale.
    On the edge of g₁, g₂: M = ‖g₂ + λ*(g₁ − g₂)‖, λ* = clip(⟨g₂, g₂ − g₁⟩/‖g₁ − g₂‖², 0, 1); g₃ has
    ⟨g₃, Gp*⟩ = 3‖Gp*‖ ≥ ‖Gp*‖², so p* = (λ*, 1 − λ*, 0) stays the minimiser over the whole simplex."""
    rng = np.random.default_rng(7)
    g1, v = rng.standard_normal(6), rng.standard_normal(6)
    g2 = -1.3 * g1 + eps * v
    diff = g1 - g2
    lam = min(max(float(g2 @ (g2 - g1)) / float(diff @ diff), 0.0), 1.0)
    nearest = g2 + lam * diff
    expected = float(np.linalg.norm(nearest))
    g3 = 3.0 * nearest / expected + rng.standard_normal(6)  # ⟨g3, nearest⟩ ≥ ‖nearest‖²: g3 does not help
    g3 -= (g3 @ nearest - 3.0 * expected) / expected**2 * nearest
    g = np.stack([g1, g2, g3])
    assert expected < 1e-3 * (lam * np.linalg.norm(g[0]) + (1 - lam) * np.linalg.norm(g[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        m = min_norm(_gram(g))
        p = mgda(_gram(g)).coefficients.numpy()
    assert m == pytest.approx(expected, abs=1e-9 * np.linalg.norm(g, axis=1).max())
    np.testing.assert_allclose(p, [lam, 1 - lam, 0.0], atol=1e-6)
