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
    and clearly non-PSD matrices.

    Positive semi-definiteness is judged on the correlation matrix C_ij = H_ij / (‖g_i‖‖g_j‖), ‖g_i‖ =
    sqrt(H_ii), so that gradients of very different norms are judged alike: an eigenvalue of C below
    −1e-6, a negative H_ii or a zero gradient with a nonzero inner product is an error. Slightly negative
    eigenvalues of C (rounding noise) are clipped to 0 and H is rebuilt from C: every H_ij then moves only
    relative to ‖g_i‖‖g_j‖ (clipping the eigenvalues of H itself would move the entries of the smallest
    gradients by the rounding of the largest, up to 1e-16·max|H|)."""
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
    corr, norms = _correlation(h, scale)
    lowest = _lowest_eigenvalue(corr)
    if lowest < -PSD_RTOL:
        raise ValueError(
            f"gram is not positive semi-definite: the correlation matrix H_ij/sqrt(H_ii·H_jj) has the "
            f"eigenvalue {lowest:.3g}; a Gram matrix of gradients cannot have one"
        )
    if lowest < 0.0 or 0.0 in norms:  # rounding noise, or zero gradients: project C onto the PSD cone
        evals, evecs = np.linalg.eigh(np.asarray(corr))
        c, n = (evecs * np.clip(evals, 0.0, None)) @ evecs.T, np.array(norms)
        h = (0.5 * (c + c.T) * n[:, None]) * n[None, :]
    return h


def _correlation(h: np.ndarray, scale: float) -> tuple[list[list[float]] | np.ndarray, list[float]]:
    """(C, norms): norms_i = ‖g_i‖ = sqrt(H_ii) and C_ij = H_ij / (norms_i·norms_j), scaled one side at
    a time (no overflow), with the rows and columns of zero gradients (H_ii = 0) set to 0. C is plain
    floats for k ≤ 3 (faster than numpy at that size), an array beyond."""
    rows = h.tolist()
    diag = [row[i] for i, row in enumerate(rows)]
    if min(diag) < -PSD_RTOL * scale:
        raise ValueError(f"gram is not positive semi-definite: negative diagonal {diag}")
    norms = [math.sqrt(max(x, 0.0)) for x in diag]
    for row, norm in zip(rows, norms, strict=True):
        if norm == 0.0 and max(map(abs, row)) > PSD_RTOL * scale:
            raise ValueError("gram is not positive semi-definite: a zero gradient (H_ii = 0) has H_ij ≠ 0")
    inv = [1.0 / x if x > 0.0 else 0.0 for x in norms]  # division guard: zero gradients
    if len(inv) > 3:
        vector = np.array(inv)
        return (h * vector) * vector[:, None], norms
    corr = [[(x * u) * v for x, v in zip(row, inv, strict=True)] for row, u in zip(rows, inv, strict=True)]
    return corr, norms


def _lowest_eigenvalue(m: list[list[float]] | np.ndarray) -> float:
    """Smallest eigenvalue of a symmetric matrix (closed forms for k ≤ 3: the common cases, which
    ``_correlation`` hands over as lists)."""
    if isinstance(m, np.ndarray):
        return float(np.linalg.eigvalsh(m)[0])
    k = len(m)
    if k == 1:
        return m[0][0]
    if k == 2:
        (a, b), (_, c) = m
        return 0.5 * (a + c) - math.hypot(0.5 * (a - c), b)
    if k == 3:
        return _lowest_eigenvalue_3(m)
    return float(np.linalg.eigvalsh(np.asarray(m))[0])


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
    """Return the user weights as float64 on the simplex (renormalised to sum exactly 1).

    Both simplex conditions are judged to the same SIMPLEX_ATOL: a weight above −1e-6 that is below 0
    (rounding, e.g. 0.3 − (1 − 0.7) = −5.6e-17) is taken as 0, like a sum within 1e-6 of 1 is taken as 1."""
    w = _as_float64(weights, "weights").reshape(-1)
    if w.shape[0] != k:
        raise ValueError(f"weights has length {w.shape[0]} but the gram matrix is {k}×{k}")
    values = w.tolist()
    if not all(map(math.isfinite, values)):
        raise ValueError(f"weights contain NaN or inf: {values}")
    if min(values) < -SIMPLEX_ATOL:
        raise ValueError(f"weights must be non-negative, got {values}")
    total = sum(values)
    if abs(total - 1.0) > SIMPLEX_ATOL:
        raise ValueError(f"weights must sum to 1 (a point of the simplex), got sum {total:.6g}: {values}")
    if min(values) < 0.0:
        w = np.maximum(w, 0.0)
        total = float(w.sum())
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
