"""The fused path's witness: its per-objective gradients compared with the plain path's, and the
random state both passes start from (the same dropout masks)."""

from __future__ import annotations

import torch
from torch import Tensor

from raco.gradients.store import ParamGrads

RngState = tuple[Tensor, list[Tensor]]


def rng_state() -> RngState:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state(), cuda


def set_rng_state(state: RngState) -> None:
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])


def fused_mismatch(fused: ParamGrads, plain: ParamGrads, rtol: float) -> str | None:
    """Where two sets of per-objective gradients ``[k, *shape]`` disagree beyond rounding, or None.

    Per parameter p and objective i: ‖f − q‖ ≤ rtol·(‖f‖ + ‖q‖) + rtol·‖g_i‖·sqrt(n_p / n), with ‖g_i‖
    the norm of the whole plain gradient over n entries (so a parameter whose share is at rounding level
    is not judged by its own relative error)."""
    keys = set(fused) | set(plain)
    sizes = {key: (plain[key] if key in plain else fused[key]).numel() for key in keys}
    k = next(iter(plain.values() if plain else fused.values())).shape[0] if keys else 0
    total = torch.zeros(k, dtype=torch.float64)
    for q in plain.values():
        total += q.reshape(k, -1).double().pow(2).sum(1).cpu()
    n = max(sum(sizes.values()) / max(k, 1), 1.0)
    for key in keys:
        f = fused.get(key)
        q = plain.get(key)
        f = torch.zeros_like(q) if f is None else f.reshape(k, -1).double()
        q = torch.zeros_like(f) if q is None else q.reshape(k, -1).double()
        err = (f - q).norm(dim=1).cpu()
        bound = rtol * (f.norm(dim=1) + q.norm(dim=1)).cpu() + rtol * total.sqrt() * (f.shape[1] / n) ** 0.5
        if bool((err > bound).any()):
            return f"relative error {float((err / q.norm(dim=1).cpu().clamp(min=1e-300)).max()):.2g}"
    return None
