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


def reference_simplex_min(b: np.ndarray, h: np.ndarray, s: float) -> tuple[np.ndarray, float]:
    """Brute-force argmin of pᵀb + s·sqrt(pᵀHp) over the simplex: SLSQP from every vertex, the
    barycentre and random starts, in softmax-free direct form; best value kept."""
    k = len(b)
    rng = np.random.default_rng(123)
    starts = [*np.eye(k), np.full(k, 1.0 / k), *rng.dirichlet(np.ones(k), size=4)]
    best_p, best_v = None, math.inf
    for x0 in starts:
        res = minimize(
            dual_objective,
            x0,
            args=(b, h, s),
            method="SLSQP",
            bounds=[(0.0, 1.0)] * k,
            constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1.0}],
            options={"ftol": 1e-15, "maxiter": 500},
        )
        p = np.clip(res.x, 0.0, None)
        p /= p.sum()
        v = dual_objective(p, b, h, s)
        if v < best_v:
            best_p, best_v = p, v
    return best_p, best_v


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20260)
