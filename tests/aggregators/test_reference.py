"""Aggregators against an independent brute-force solver (scipy SLSQP) and hand-derived values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raco.aggregators import cagrad, mgda, min_norm, raco

from .conftest import dual_objective, random_problem, reference_simplex_min

SIZES = {2: 100, 3: 100, 5: 100, 8: 100}


@pytest.mark.parametrize("k", sorted(SIZES))
def test_duals_match_brute_force(k: int) -> None:
    """Our certified dual value is never worse than scipy's and agrees with it; minimisers agree.
    (The exact-gradient reference was checked on these seeded instances against finite differences
    from every start: never worse by more than 2e-16 of the scale.)"""
    rng = np.random.default_rng(1000 + k)
    for trial in range(SIZES[k]):
        dim = k + 4 if trial % 3 else max(1, k - 1)  # every third instance rank-deficient
        _, gram, w = random_problem(rng, k, dim)
        h, wn = gram.numpy(), w.numpy()
        c = float(rng.uniform(0.05, 0.95))
        s = c * math.sqrt(wn @ h @ wn)
        agg = cagrad(gram, w, c=c)
        ours = dual_objective(agg.dual.numpy(), h @ wn, h, s)
        ref_p, ref = reference_simplex_min(h @ wn, h, s, exact_gradient=True)
        scale = np.abs(h @ wn).max() + s * math.sqrt(h.diagonal().max())
        assert ours <= ref + 1e-9 * scale, (k, trial, ours, ref)
        assert ours == pytest.approx(ref, abs=1e-6 * scale)
        if dim > k:  # strictly convex: the minimiser is unique
            np.testing.assert_allclose(agg.dual.numpy(), ref_p, atol=2e-4)

        m_ref_p, m_ref = reference_simplex_min(np.zeros(k), h, 1.0, exact_gradient=True)
        m = min_norm(gram)
        assert m <= m_ref + 1e-7 * math.sqrt(h.diagonal().max())
        assert m == pytest.approx(m_ref, abs=1e-5 * math.sqrt(h.diagonal().max()))
        if dim > k:
            np.testing.assert_allclose(mgda(gram, w).coefficients.numpy(), m_ref_p, atol=2e-4)


def test_orthogonal_unit_gradients_hand_values() -> None:
    """g1 = e1, g2 = e2, w = (½, ½), c = 0.4: s = 0.4/√2, p = (½, ½), ‖G_p‖ = 1/√2,
    a = ½ + (0.4/√2)/(1/√2)·½ = 0.7 for both methods (no clipping: p = w); MGDA p* = (½, ½)."""
    gram, w = torch.eye(2), torch.tensor([0.5, 0.5])
    for agg in (cagrad(gram, w, c=0.4), raco(gram, w, c=0.4)):
        torch.testing.assert_close(agg.coefficients, torch.tensor([0.7, 0.7], dtype=torch.float64))
        torch.testing.assert_close(agg.dual, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert not raco(gram, w).clip_active
    torch.testing.assert_close(mgda(gram).coefficients, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert min_norm(gram) == pytest.approx(1 / math.sqrt(2), rel=1e-12)


def test_boundary_dual_hand_values() -> None:
    """H = I, w = (0.8, 0.2), c = 0.5: h(λ) = 0.2 + 0.6λ + s·sqrt(λ² + (1−λ)²) has
    |d/dλ sqrt(·)| ≤ 1 < 0.6/s, so h is increasing and p = (0, 1); a = w + s·(0, 1).
    RACO clips p to (0, 0.2), which points the same way: same a, so the clip is not active (it changed
    nothing; clip_active counts changed coefficients, docs/metrics.md)."""
    gram, w = torch.eye(2), torch.tensor([0.8, 0.2])
    s = 0.5 * math.sqrt(0.68)
    expected = torch.tensor([0.8, 0.2 + s], dtype=torch.float64)
    torch.testing.assert_close(cagrad(gram, w, c=0.5).coefficients, expected)
    agg = raco(gram, w, c=0.5)
    torch.testing.assert_close(agg.coefficients, expected)
    torch.testing.assert_close(agg.clipped_dual, torch.tensor([0.0, 0.2], dtype=torch.float64))
    assert not agg.clip_active


def test_clip_active_means_the_coefficients_changed() -> None:
    """Interior p = (λ, 1 − λ) clipped by w where only one entry exceeds its weight: p̃ is not a multiple
    of p, RACO's coefficients differ from CAGrad's, and clip_active says so; a vertex clipped to a
    multiple of itself does not (the test above); disjoint supports (p̃ = 0: a = w) do."""
    gram = torch.tensor([[1.0, -0.5], [-0.5, 1.0]], dtype=torch.float64)
    for w in (torch.tensor([0.7, 0.3]), torch.tensor([0.3, 0.7])):
        agg, plain = raco(gram, w, c=0.9), cagrad(gram, w, c=0.9)
        p = agg.dual
        assert 0 < p[0] < 1 and ((p - w.double()) > 1e-6).any()  # interior, one entry clipped
        changed = not torch.allclose(agg.coefficients, plain.coefficients, rtol=1e-9, atol=0)
        assert agg.clip_active == changed is True
    disjoint = raco(torch.eye(2, dtype=torch.float64), torch.tensor([1.0, 0.0]), c=0.5)  # p = (0, 1)
    torch.testing.assert_close(disjoint.dual, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert disjoint.clip_active and disjoint.degenerate


def test_interior_dual_hand_values() -> None:
    """H = [[1, −½], [−½, 1]] (cos = −½), w = (0.7, 0.3), c = 0.9. b = Hw = (0.55, −0.05),
    wᵀHw = 0.37, s = 0.9·√0.37. With x = 2λ − 1, Q = (3x² + 1)/4 and h'(λ) = 0.6 + s·3x/sqrt(3x²+1) = 0
    gives x = −r/sqrt(9 − 3r²), r = 0.6/s. RACO then clips p₂ to w₂ = 0.3."""
    gram = torch.tensor([[1.0, -0.5], [-0.5, 1.0]], dtype=torch.float64)
    w = torch.tensor([0.7, 0.3], dtype=torch.float64)
    s = 0.9 * math.sqrt(0.37)
    r = 0.6 / s
    lam = (1.0 - r / math.sqrt(9.0 - 3.0 * r * r)) / 2.0
    p = np.array([lam, 1.0 - lam])
    h = gram.numpy()
    agg = cagrad(gram, w, c=0.9)
    np.testing.assert_allclose(agg.dual.numpy(), p, rtol=1e-10)
    np.testing.assert_allclose(
        agg.coefficients.numpy(), [0.7, 0.3] + s / math.sqrt(p @ h @ p) * p, rtol=1e-10
    )
    clipped = np.array([lam, 0.3])
    agg = raco(gram, w, c=0.9)
    assert agg.clip_active
    np.testing.assert_allclose(agg.clipped_dual.numpy(), clipped, rtol=1e-10)
    expected = [0.7, 0.3] + s / math.sqrt(clipped @ h @ clipped) * clipped
    np.testing.assert_allclose(agg.coefficients.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize(
    "rescale,factor",
    [("none", 1.0), (0, 1.0), ("1/(1+c^2)", 1 / 1.16), (1, 1 / 1.16), ("1/(1+c)", 1 / 1.4), (2, 1 / 1.4)],
)
def test_cagrad_rescale_options(rescale: object, factor: float) -> None:
    gram, w = torch.eye(2), torch.tensor([0.5, 0.5])
    agg = cagrad(gram, w, c=0.4, rescale=rescale)
    torch.testing.assert_close(agg.coefficients, torch.tensor([0.7, 0.7], dtype=torch.float64) * factor)
