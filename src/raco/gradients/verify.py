"""Witnesses checked once, before a run trains on a path: the fused path's per-objective gradients against
the plain path's, packed log-probs against the same rows padded, and the random state both passes of a
comparison start from (the same dropout masks)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from raco.data.packing import unpack
from raco.gradients.store import ParamGrads
from raco.losses.logps import Batch, response_logps

PACKED_RTOL = 1e-4  # packed vs padded log-probs, float32 weights (compared without autocast)
PACKED_RTOL_LOW_PRECISION = 1e-3  # bfloat16/float16 weights (tiny-random in bfloat16: 1.4e-5 apart)
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


def packed_mismatch(
    model: nn.Module,
    reference_logps: Callable[[Batch], Tensor | None],
    packed: Batch,
    chunk_tokens: int | None = None,
) -> str | None:
    """Where the log-probs of a packed micro-batch (the policy's, then the reference's) first differ from
    those of the same rows padded, beyond |got − want| / max(|want|, 1) ≤ PACKED_RTOL (float32 weights,
    compared without autocast, where the two agree to ~1e-6) or PACKED_RTOL_LOW_PRECISION; None where
    they agree. No gradient; the model's mode and the random state are restored."""
    padded = unpack(packed)
    exact = all(p.dtype == torch.float32 for p in model.parameters())
    rtol = PACKED_RTOL if exact else PACKED_RTOL_LOW_PRECISION
    device = packed["input_ids"].device.type
    rng, training = rng_state(), model.training
    model.eval()  # dropout would make the two forwards differ
    try:
        with torch.no_grad(), torch.autocast(device, enabled=False) if exact else nullcontext():
            sources: list[tuple[str, Callable[[Batch], Tensor | None]]] = [
                ("policy", lambda b: response_logps(model, b, chunk_tokens=chunk_tokens)[0]),
                ("reference", reference_logps),
            ]
            for name, logps in sources:
                got, want = logps(packed), logps(padded)
                if got is None or want is None:
                    continue
                error = (got.float() - want.float()).abs() / want.float().abs().clamp(min=1.0)
                if bool((error > rtol).any()):
                    row = int(error.argmax())
                    return (
                        f"the {name}'s log-probs of a packed micro-batch differ from those of the same "
                        f"rows padded (row {row}: {float(got[row]):.6g} vs {float(want[row]):.6g}, "
                        f"relative {float(error[row]):.2g} > {rtol:g})"
                    )
    finally:
        model.train(training)
        set_rng_state(rng)
    return None
