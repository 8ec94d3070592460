"""Per-objective gradient storage: Gram matrix, all-reduce, and writing Σ a_i g_i into ``.grad``.

Per-objective gradients live parameter by parameter as ``[k, *shape]`` float32 tensors (memory: k × the
trainable parameters — small with LoRA, k copies of the model for full fine-tuning). They are kept only
from the first micro-batch of an optimizer step to the moment the update is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

ParamGrads = dict[int, Tensor]  # id(parameter) -> [k, *parameter.shape] per-objective gradients


def accumulate_into(store: ParamGrads, grads: ParamGrads) -> None:
    """``store[p] += grads[p]`` for every parameter (moves tensors in when absent)."""
    for key, g in grads.items():
        if key in store:
            store[key].add_(g)
        else:
            store[key] = g


def gram_matrix(store: ParamGrads, k: int) -> Tensor:
    """H_ij = ⟨g_i, g_j⟩ in float64, accumulated parameter by parameter: H = Σ_p G_p G_pᵀ, G_p = [k, numel_p].

    Never builds a k × (total parameters) matrix; the float64 copy is one parameter at a time."""
    gram = torch.zeros(k, k, dtype=torch.float64)
    for g in store.values():
        flat = g.reshape(k, -1).to(torch.float64)
        gram += (flat @ flat.t()).cpu()
    return gram


def distributed_world() -> int:
    """Number of processes when ``torch.distributed`` is initialised (accelerate / torchrun), else 1."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensors: Sequence[Tensor]) -> None:
    """Sum tensors in place over all ranks (no-op in a single process).

    Explicit because DDP's backward hooks never see ``autograd.grad`` or hook-formed gradients
    (PyTorch issue 47562); every rank then holds the global per-objective gradients."""
    if distributed_world() == 1:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def combine(g: Tensor, coefficients: Tensor) -> Tensor:
    """Σ_i a_i g_i of one parameter's ``[k, *shape]`` gradients, kept as ``[1, *shape]``."""
    a = coefficients.to(device=g.device, dtype=g.dtype).reshape((-1,) + (1,) * (g.dim() - 1))
    return (a * g).sum(dim=0, keepdim=True)


def write_direction(store: ParamGrads, coefficients: Tensor, params: Sequence[nn.Parameter]) -> None:
    """``p.grad = Σ_i a_i g_i[p]`` for every trainable parameter (zeros where no gradient was formed)."""
    for p in params:
        g = store.get(id(p))
        p.grad = torch.zeros_like(p) if g is None else combine(g, coefficients)[0].to(p.dtype)


def add_direction(direction: ParamGrads, store: ParamGrads, coefficients: Tensor) -> None:
    """``direction[p] += Σ_i a_i g_i[p]`` (per-micro-batch solving sums the micro-batch directions)."""
    accumulate_into(direction, {key: combine(g, coefficients) for key, g in store.items()})
