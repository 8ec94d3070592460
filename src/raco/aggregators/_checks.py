"""Argument checks shared by the aggregators. Every failure is a ValueError saying what is wrong."""

from __future__ import annotations

import math

import numpy as np
import torch

SYMMETRY_RTOL = 1e-6
PSD_RTOL = 1e-6
SIMPLEX_ATOL = 1e-6


def _as_float64(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from err


def check_gram(gram: object) -> np.ndarray:
    """Return the Gram matrix as a symmetrised float64 array; reject non-square, NaN/inf, asymmetric,
    and clearly non-PSD matrices (eigenvalue below −1e-6 · max|H|). Slightly negative eigenvalues
    (rounding noise) are clipped to 0 so that the duals stay convex."""
    h = _as_float64(gram, "gram")
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square k×k matrix, got shape {tuple(h.shape)}")
    flat = h.ravel().tolist()
    if not all(map(math.isfinite, flat)):
        raise ValueError("gram contains NaN or inf (a per-objective gradient is not finite)")
    scale = max(map(abs, flat))
    asym = float(np.abs(h - h.T).max()) if h.shape[0] > 1 else 0.0
    if asym > SYMMETRY_RTOL * scale:
        raise ValueError(f"gram is not symmetric: max |H - Hᵀ| = {asym:.3g} (max |H| = {scale:.3g})")
    if asym > 0.0:
        h = 0.5 * (h + h.T)
    lowest = _lowest_eigenvalue(h) if scale > 0.0 else 0.0
    if lowest < -PSD_RTOL * scale:
        raise ValueError(
            f"gram is not positive semi-definite: smallest eigenvalue {lowest:.3g} "
            f"(max |H| = {scale:.3g}); a Gram matrix of gradients cannot have one"
        )
    if lowest < 0.0:  # rounding noise: project onto the PSD cone
        evals, evecs = np.linalg.eigh(h)
        h = (evecs * np.clip(evals, 0.0, None)) @ evecs.T
        h = 0.5 * (h + h.T)
    return h


def _lowest_eigenvalue(h: np.ndarray) -> float:
    """Smallest eigenvalue of a symmetric matrix (closed forms for k ≤ 3: the common cases)."""
    k = h.shape[0]
    if k == 1:
        return float(h[0, 0])
    if k == 2:
        (a, b), (_, c) = h.tolist()
        return 0.5 * (a + c) - math.hypot(0.5 * (a - c), b)
    if k == 3:
        return _lowest_eigenvalue_3(h.tolist())
    return float(np.linalg.eigvalsh(h)[0])


def _lowest_eigenvalue_3(m: list[list[float]]) -> float:
    """Trigonometric closed form for symmetric 3×3 matrices (Smith, CACM 1961)."""
    (a, b, c), (_, d, e), (_, _, f) = m
    off = b * b + c * c + e * e
    if off == 0.0:
        return min(a, d, f)
    q = (a + d + f) / 3.0
    p = math.sqrt(((a - q) ** 2 + (d - q) ** 2 + (f - q) ** 2 + 2.0 * off) / 6.0)
    a, d, f = (a - q) / p, (d - q) / p, (f - q) / p
    b, c, e = b / p, c / p, e / p
    r = 0.5 * (a * (d * f - e * e) - b * (b * f - c * e) + c * (b * e - c * d))
    phi = math.acos(min(1.0, max(-1.0, r))) / 3.0
    return q + 2.0 * p * math.cos(phi + 2.0 * math.pi / 3.0)


def check_weights(weights: object, k: int) -> np.ndarray:
    """Return the user weights as float64 on the simplex (renormalised to sum exactly 1)."""
    w = _as_float64(weights, "weights").reshape(-1)
    if w.shape[0] != k:
        raise ValueError(f"weights has length {w.shape[0]} but the gram matrix is {k}×{k}")
    values = w.tolist()
    if not all(map(math.isfinite, values)):
        raise ValueError(f"weights contain NaN or inf: {values}")
    if min(values) < 0.0:
        raise ValueError(f"weights must be non-negative, got {values}")
    total = sum(values)
    if abs(total - 1.0) > SIMPLEX_ATOL:
        raise ValueError(f"weights must sum to 1 (a point of the simplex), got sum {total:.6g}: {values}")
    return w / total


def check_c(c: float) -> float:
    """Return the conflict-correction radius c, which must lie in [0, 1)."""
    if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c):
        raise ValueError(f"c must be a finite number in [0, 1), got {c!r}")
    if not 0.0 <= c < 1.0:
        raise ValueError(f"c must lie in [0, 1), got {c}")
    return float(c)


def to_output(x: np.ndarray, like: object) -> torch.Tensor:
    """float64 tensor on the device of ``like`` (the caller's gram), with no autograd graph."""
    device = like.device if isinstance(like, torch.Tensor) else torch.device("cpu")
    return torch.from_numpy(np.array(x, dtype=np.float64)).to(device)
