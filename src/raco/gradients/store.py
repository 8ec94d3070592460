"""Per-objective gradient storage: Gram matrix and writing Σ a_i g_i into ``.grad``.

Per-objective gradients live parameter by parameter as ``[k, *shape]`` float32 tensors on the
parameter's device (memory: k × the trainable parameters — small with LoRA, k copies of the model for
full fine-tuning; under FSDP2 each rank holds only its ``[k, *local_shape]`` shards, gradients/sharded.py).
They are kept only from the first micro-batch of an optimizer step to the moment the update is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from raco.gradients import collectives

ParamGrads = dict[int, Tensor]  # id(parameter) -> [k, *parameter.shape] per-objective gradients


def accumulate_into(store: ParamGrads, grads: ParamGrads) -> None:
    """``store[p] += grads[p]`` for every parameter (moves tensors in when absent)."""
    for key, g in grads.items():
        if key in store:
            store[key].add_(g)
        else:
            store[key] = g


GRAM_BLOCK = 1 << 20
"""Entries per block of the Gram products: the temporary is at most k · GRAM_BLOCK · 8 bytes (16 MiB at
k = 2) instead of a float64 copy of a whole parameter (4.2 GB at k = 2 for Llama-3-8B's LM head)."""


def product_dtype(device: torch.device) -> torch.dtype:
    """What the Gram's block products are formed in: float64 on the CPU (exact to float64 rounding, at
    about the cost of float32 there); float32 on accelerators, whose float64 matmuls run at a small
    fraction of the float32 rate and would need float64 copies of every block — the block products
    are then summed in float64 (error ≲ √block · 2⁻²⁴ relative per block, ~1e-5 at most)."""
    return torch.float64 if device.type == "cpu" else torch.float32


def gram_partial(
    store: ParamGrads,
    k: int,
    keys: Sequence[int] | None = None,
    block: int = GRAM_BLOCK,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Σ_p G_p G_pᵀ over the store's parameters (or ``keys``), G_p = [k, numel_p], in float64 on the
    gradients' device (the CPU for an empty store), without a host sync: each G_p in column blocks of
    ``block`` entries, every block's product formed in ``dtype`` (default ``product_dtype`` of the
    device) and summed in float64, so no parameter is copied whole. A parameter of at most ``block``
    entries is one block (the sum of its products is as before)."""
    chosen = store.values() if keys is None else [store[key] for key in keys]
    gram: Tensor | None = None
    for g in chosen:
        flat = g.reshape(k, -1)
        to = dtype or product_dtype(flat.device)
        for start in range(0, flat.shape[1], block):
            part = flat[:, start : start + block].to(to)
            product = (part @ part.t()).to(torch.float64)
            gram = product if gram is None else gram + product
    return torch.zeros(k, k, dtype=torch.float64) if gram is None else gram


def gram_matrix(store: ParamGrads, k: int) -> Tensor:
    """H_ij = ⟨g_i, g_j⟩ in float64 (on the host), accumulated parameter by parameter:
    H = Σ_p G_p G_pᵀ, G_p = [k, numel_p].

    Never builds a k × (total parameters) matrix; the float64 copy is one parameter at a time."""
    return gram_partial(store, k).cpu()


def distributed_world() -> int:
    """Number of processes when ``torch.distributed`` is initialised (accelerate / torchrun), else 1."""
    return collectives.world_size()


def all_reduce_sum(tensors: Sequence[Tensor]) -> None:
    """Sum tensors in place over all ranks (no-op in a single process), in flat buckets; the tensors
    must live on the compute device (gradients/collectives.py).

    Explicit because DDP's backward hooks never see ``autograd.grad`` or hook-formed gradients
    (PyTorch issue 47562); every rank then holds the global per-objective gradients."""
    collectives.all_reduce_bucketed_(tensors)


def combine(g: Tensor, coefficients: Tensor) -> Tensor:
    """Σ_i a_i g_i of one parameter's ``[k, *shape]`` gradients, kept as ``[1, *shape]``: one
    ``[1, k] @ [k, numel]`` product, so no ``[k, *shape]`` temporary of the scaled gradients is formed
    (268 MB at k = 2 for a 131k × 256 head)."""
    a = coefficients.to(device=g.device, dtype=g.dtype).reshape(1, -1)
    return (a @ g.reshape(g.shape[0], -1)).reshape(1, *g.shape[1:])


def write_direction(store: ParamGrads, coefficients: Tensor, params: Sequence[nn.Parameter]) -> None:
    """``p.grad = Σ_i a_i g_i[p]`` for every trainable parameter (zeros where no gradient was formed)."""
    for p in params:
        g = store.get(id(p))
        if g is None:
            p.grad = torch.zeros_like(p)
        elif isinstance(p, DTensor):  # g holds this rank's shard: the update is the sharded .grad
            local = combine(g, coefficients)[0].to(p.dtype)
            p.grad = DTensor.from_local(
                local, p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride()
            )
        else:
            p.grad = combine(g, coefficients)[0].to(p.dtype)


def add_direction(direction: ParamGrads, store: ParamGrads, coefficients: Tensor) -> None:
    """``direction[p] += Σ_i a_i g_i[p]`` (per-micro-batch solving sums the micro-batch directions)."""
    accumulate_into(direction, {key: combine(g, coefficients) for key, g in store.items()})
