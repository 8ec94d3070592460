"""Singular Gram matrices (documented behaviour) and bad input (clear ValueErrors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raco.aggregators import AGGREGATORS, cagrad, mgda, min_norm, raco, weighted_sum

F64 = torch.float64


def test_identical_gradients() -> None:
    """g1 = g2 = g: every dual is optimal; d = (1 + c)·g for CAGrad and RACO, d = g for MGDA."""
    g = np.array([[1.0, 2.0], [1.0, 2.0]])
    gram, w = torch.tensor(g @ g.T), torch.tensor([0.3, 0.7])
    for method in (cagrad, raco):
        agg = method(gram, w, c=0.4)
        np.testing.assert_allclose(agg.coefficients.numpy() @ g, 1.4 * g[0], rtol=1e-12)
    np.testing.assert_allclose(mgda(gram).coefficients.numpy() @ g, g[0], rtol=1e-12)
    assert min_norm(gram) == pytest.approx(math.sqrt(5.0))


def test_colinear_gradients_of_different_length() -> None:
    """g2 = 3·g1: MGDA picks the shorter one; the correction points along g1 (no conflict)."""
    g = np.array([[1.0, 0.0, 1.0], [3.0, 0.0, 3.0]])
    gram, w = torch.tensor(g @ g.T), torch.tensor([0.5, 0.5])
    torch.testing.assert_close(mgda(gram).coefficients, torch.tensor([1.0, 0.0], dtype=F64))
    d = raco(gram, w, c=0.4).coefficients.numpy() @ g
    g0 = w.numpy() @ g
    np.testing.assert_allclose(d, 1.4 * g0, rtol=1e-12)


def test_exactly_opposite_gradients() -> None:
    """g2 = −g1: 0 is in the hull, so MGDA returns p = (½, ½), d = 0 and M = 0. With w = (½, ½)
    the anchor g_0 is 0 and CAGrad/RACO are degenerate (a = w); with w = (0.7, 0.3), g_0 = 0.4·g1,
    the dual picks g2 (p = (0, 1), p̃ = (0, 0.3): same direction) and d = (1 − c)·g_0 = 0.24·g1."""
    g = np.array([[1.0, -2.0], [-1.0, 2.0]])
    gram = torch.tensor(g @ g.T)
    torch.testing.assert_close(mgda(gram).coefficients, torch.tensor([0.5, 0.5], dtype=F64))
    assert min_norm(gram) == pytest.approx(0.0, abs=1e-7)
    for method in (cagrad, raco):
        agg = method(gram, torch.tensor([0.5, 0.5]))
        assert agg.degenerate and agg.dual is None
        torch.testing.assert_close(agg.coefficients, torch.tensor([0.5, 0.5], dtype=F64))
    w = torch.tensor([0.7, 0.3], dtype=F64)
    for method in (cagrad, raco):
        d = method(gram, w, c=0.4).coefficients.numpy() @ g
        np.testing.assert_allclose(d, 0.24 * g[0], rtol=1e-12)


def test_zero_gradients() -> None:
    """All gradients zero: every method is finite; CAGrad/RACO fall back to a = w, M = 0."""
    gram, w = torch.zeros(3, 3), torch.tensor([0.2, 0.3, 0.5])
    for name, method in AGGREGATORS.items():
        agg = method(gram, w)
        assert torch.isfinite(agg.coefficients).all(), name
    assert raco(gram, w).degenerate and cagrad(gram, w).degenerate
    torch.testing.assert_close(raco(gram, w).coefficients, w.to(F64))
    assert min_norm(gram) == 0.0


def test_one_zero_gradient_among_others() -> None:
    """A zero gradient g3 puts 0 in the hull: MGDA selects it (M = 0)."""
    g = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    gram = torch.tensor(g @ g.T)
    torch.testing.assert_close(mgda(gram).coefficients, torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    assert min_norm(gram) == 0.0


def test_disjoint_support_clip_falls_back_to_weights() -> None:
    """w = (1, 0) with a conflicting g2: the dual p = (0, 1) and p̃ = min(p, w) = 0, so a = w."""
    g = np.array([[1.0, 0.0], [-1.0, 0.1]])
    gram = torch.tensor(g @ g.T)
    agg = raco(gram, torch.tensor([1.0, 0.0]), c=0.9)
    assert agg.degenerate and agg.clip_active
    torch.testing.assert_close(agg.coefficients, torch.tensor([1.0, 0.0], dtype=F64))


def test_c_zero_is_weighted_sum() -> None:
    gram, w = torch.tensor([[1.0, -0.3], [-0.3, 2.0]]), torch.tensor([0.6, 0.4])
    for method in (cagrad, raco):
        torch.testing.assert_close(method(gram, w, c=0.0).coefficients, weighted_sum(gram, w).coefficients)


def test_single_objective() -> None:
    gram, w = torch.tensor([[4.0]]), torch.tensor([1.0])
    torch.testing.assert_close(raco(gram, w, c=0.5).coefficients, torch.tensor([1.5], dtype=F64))
    torch.testing.assert_close(mgda(gram).coefficients, torch.tensor([1.0], dtype=F64))
    assert min_norm(gram) == pytest.approx(2.0)


def test_singular_larger_k_rank_two() -> None:
    """8 gradients in a plane (rank 2): solved exactly by the enumeration fallback."""
    rng = np.random.default_rng(5)
    g = rng.standard_normal((8, 2))
    gram, w = torch.tensor(g @ g.T), torch.tensor(rng.dirichlet(np.ones(8)))
    for name, method in AGGREGATORS.items():
        assert torch.isfinite(method(gram, w).coefficients).all(), name


BAD_GRAMS = [
    (torch.ones(2, 3), "square"),
    (torch.ones(2), "square"),
    (torch.zeros(0, 0), "square"),
    (torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), "NaN"),
    (torch.tensor([[1.0, float("inf")], [float("inf"), 1.0]]), "inf"),
    (torch.tensor([[1.0, 0.5], [0.2, 1.0]]), "symmetric"),
    (torch.tensor([[1.0, 2.0], [2.0, 1.0]]), "positive semi-definite"),
    (torch.tensor([[-1.0]]), "positive semi-definite"),
    ("not a matrix", "tensor or array"),
]


@pytest.mark.parametrize("gram,message", BAD_GRAMS)
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_bad_gram_is_rejected(name: str, gram: object, message: str) -> None:
    k = gram.shape[0] if isinstance(gram, torch.Tensor) and gram.ndim >= 1 and gram.shape[0] else 2
    with pytest.raises(ValueError, match=message):
        AGGREGATORS[name](gram, torch.full((k,), 1.0 / k))


def test_psd_is_judged_per_pair_of_gradients() -> None:
    """Indefiniteness among small gradients is not hidden by a large one: H = diag(10¹², [[1, 2], [2, 1]])
    has the eigenvalue −1 (−1e-12 of max|H|), and the correlation matrix shows it as −1."""
    gram = torch.tensor([[1e12, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 2.0, 1.0]], dtype=F64)
    for method in AGGREGATORS.values():
        with pytest.raises(ValueError, match="positive semi-definite"):
            method(gram, torch.full((3,), 1.0 / 3))


def test_rounding_repair_keeps_small_gradients_digits() -> None:
    """Rank-deficient gradients with norms from 1e-6 to 1e6 give Gram matrices whose rounding makes them
    slightly indefinite. The repair moves each H_ij by at most 1e-12·‖g_i‖‖g_j‖ (clipping H's own
    eigenvalues moved the small gradients' entries by ~1e-16·max|H| = 1e-4·‖g_small‖²) and leaves a PSD
    matrix; weighting only the small gradients then gives ‖d − g₀‖ = c‖g₀‖ to 1e-8."""
    from raco.aggregators._checks import check_gram

    repaired = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        g = rng.standard_normal((5, 2)) * np.array([[1e-6], [1e-6], [1.0], [1e6], [1e6]])
        raw = g @ g.T
        h = check_gram(torch.tensor(raw))
        norms = np.linalg.norm(g, axis=1)
        assert (np.abs(h - raw) <= 1e-12 * np.outer(norms, norms)).all(), seed
        assert np.linalg.eigvalsh(h / np.outer(norms, norms))[0] >= -1e-12, seed
        repaired += bool(np.linalg.eigvalsh(raw / np.outer(norms, norms))[0] < 0.0)
        w, c = np.array([0.5, 0.5, 0.0, 0.0, 0.0]), 0.4
        agg = cagrad(torch.tensor(raw), torch.tensor(w), c=c)
        if not agg.degenerate:
            g0 = w @ g
            d = agg.coefficients.numpy() @ g
            assert np.linalg.norm(d - g0) == pytest.approx(c * np.linalg.norm(g0), rel=1e-8), seed
    assert repaired >= 5  # the repair really ran


BAD_WEIGHTS = [
    (torch.tensor([0.5, 0.3, 0.2]), "length 3"),
    (torch.tensor([1.2, -0.2]), "non-negative"),
    (torch.tensor([0.5, 0.4]), "sum to 1"),
    (torch.tensor([float("nan"), 1.0]), "NaN"),
]


def test_weights_below_zero_by_rounding_count_as_zero() -> None:
    """0.3 − (1 − 0.7) = −5.6e-17 in floats: a weight, like the weights' sum, is judged to 1e-6, not to
    exactly 0; it becomes 0 (and RACO's clip by it is a clip by 0)."""
    w = torch.tensor([0.7, 0.3, 0.3 - (1.0 - 0.7)], dtype=F64)
    assert float(w[2]) < 0.0
    gram = torch.eye(3, dtype=F64)
    torch.testing.assert_close(weighted_sum(gram, w).coefficients, torch.tensor([0.7, 0.3, 0.0], dtype=F64))
    agg = raco(gram, w, c=0.5)
    assert float(agg.clipped_dual[2]) == 0.0 and float(agg.coefficients[2]) == 0.0


@pytest.mark.parametrize("weights,message", BAD_WEIGHTS)
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_bad_weights_are_rejected(name: str, weights: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AGGREGATORS[name](torch.eye(2), weights)


@pytest.mark.parametrize("c", [-0.1, 1.0, 1.5, float("nan"), "0.4", True])
@pytest.mark.parametrize("method", [cagrad, raco])
def test_bad_c_is_rejected(method, c: object) -> None:
    with pytest.raises(ValueError, match=r"c must"):
        method(torch.eye(2), torch.tensor([0.5, 0.5]), c=c)


def test_bad_rescale_is_rejected() -> None:
    with pytest.raises(ValueError, match="rescale must be one of"):
        cagrad(torch.eye(2), torch.tensor([0.5, 0.5]), rescale="sqrt")


def test_aggregation_is_immutable() -> None:
    agg = raco(torch.eye(2), torch.tensor([0.5, 0.5]))
    with pytest.raises(AttributeError):
        agg.coefficients = torch.zeros(2)
