"""Shared helpers: seeded random Gram matrices and an independent brute-force reference (scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize


def random_problem(rng: np.random.Generator, k: int, dim: int | None = None):
    """Gradients G [k, dim] (full rank when dim ≥ k), their Gram matrix and simplex weights."""
    g = rng.standard_normal((k, dim or 3 * k + 5))
    w = rng.dirichlet(np.ones(k))
    return g, torch.tensor(g @ g.T), torch.tensor(w)


def dual_objective(p: np.ndarray, b: np.ndarray, h: np.ndarray, s: float) -> float:
    return float(p @ b + s * math.sqrt(max(p @ h @ p, 0.0)))


def dual_gradient(p: np.ndarray, b: np.ndarray, h: np.ndarray, s: float) -> np.ndarray:
    """∇(pᵀb + s·sqrt(pᵀHp)) = b + s·Hp/sqrt(pᵀHp) (b alone at the kink pᵀHp = 0)."""
    hp = h @ p
    q = float(p @ hp)
    return b + s * hp / math.sqrt(q) if q > 0.0 else b.copy()


SIMPLEX = {"type": "eq", "fun": lambda p: p.sum() - 1.0, "jac": lambda p: np.ones_like(p)}


def _slsqp(x0: np.ndarray, b: np.ndarray, h: np.ndarray, s: float, exact_gradient: bool):
    res = minimize(
        dual_objective,
        x0,
        args=(b, h, s),
        jac=dual_gradient if exact_gradient else None,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * len(b),
        constraints=[SIMPLEX],
        options={"ftol": 1e-15, "maxiter": 500},
    )
    p = np.clip(res.x, 0.0, None)
    p /= p.sum()
    return p, dual_objective(p, b, h, s)


def reference_simplex_min(
    b: np.ndarray, h: np.ndarray, s: float, exact_gradient: bool = False
) -> tuple[np.ndarray, float]:
    """Brute-force argmin of pᵀb + s·sqrt(pᵀHp) over the simplex: SLSQP from every vertex, the
    barycentre and random starts, in softmax-free direct form; best value kept.

    ``exact_gradient``: the starts use ``dual_gradient`` instead of finite differences (4× faster at
    k = 8) and the best point is then polished with finite differences (the kink pᵀHp = 0 has no
    gradient). Use it only on instances where it was checked against the default: on near-degenerate
    ones (tests/aggregators/test_zero_rule.py) finite differences from every start can be better by
    ~1e-12 of the problem's scale."""
    k = len(b)
    rng = np.random.default_rng(123)
    starts = [*np.eye(k), np.full(k, 1.0 / k), *rng.dirichlet(np.ones(k), size=4)]
    best_p, best_v = min((_slsqp(x0, b, h, s, exact_gradient) for x0 in starts), key=lambda r: r[1])
    if not exact_gradient:
        return best_p, best_v
    polished_p, polished_v = _slsqp(best_p, b, h, s, exact_gradient=False)
    return (polished_p, polished_v) if polished_v < best_v else (best_p, best_v)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20260)
