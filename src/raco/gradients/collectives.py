"""Every ``torch.distributed`` collective raco issues, in one place; every tensor on the compute device.

NCCL (what accelerate picks whenever CUDA is present) rejects CPU tensors, so nothing here sends a
tensor that is not on the ``device`` it is given: small host values (loss sums, counts, flags) are
copied there first (``sum_over_ranks``), per-objective gradients already live there.

Per-objective gradients travel in flat buckets of about ``BUCKET_BYTES`` (DDP's 25 MB default): one
call per bucket instead of one per parameter (hundreds of latency-bound calls for LoRA otherwise).

``TRAFFIC`` counts the bytes each kind of collective sent from this process (benchmarks read it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

BUCKET_BYTES = 25 * 2**20
TRAFFIC: Counter[str] = Counter()  # collective name -> bytes of the tensors this process passed


def world_size() -> int:
    """Number of processes when ``torch.distributed`` is initialised (accelerate / torchrun), else 1."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def _count(name: str, t: Tensor) -> None:
    TRAFFIC[name] += t.numel() * t.element_size()


def all_reduce_(t: Tensor) -> None:
    """Sum ``t`` in place over all ranks (no-op alone); ``t`` must already be on the compute device."""
    if world_size() > 1:
        _count("all_reduce", t)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def sum_over_ranks(t: Tensor, device: torch.device | str) -> Tensor:
    """Σ over ranks of ``t``, as a new tensor on ``device`` (``t`` may live anywhere, e.g. the host)."""
    out = t.detach().to(device=device, copy=True)
    all_reduce_(out)
    return out


def _buckets(tensors: Sequence[Tensor], bucket_bytes: int) -> Iterator[list[Tensor]]:
    """Consecutive runs of tensors of one device and dtype, each about ``bucket_bytes`` at most."""
    bucket: list[Tensor] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        same = not bucket or (bucket[0].device, bucket[0].dtype) == (t.device, t.dtype)
        if bucket and (not same or size + nbytes > bucket_bytes):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += nbytes
    if bucket:
        yield bucket


def all_reduce_bucketed_(tensors: Sequence[Tensor], bucket_bytes: int = BUCKET_BYTES) -> None:
    """Sum every tensor in place over all ranks, one all-reduce per flat bucket (no-op alone)."""
    if world_size() == 1:
        return
    for bucket in _buckets(tensors, bucket_bytes):
        if len(bucket) == 1:
            all_reduce_(bucket[0])
            continue
        flat = torch.cat([t.reshape(-1) for t in bucket])
        all_reduce_(flat)
        offset = 0
        for t in bucket:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def reduce_scatter_(
    out: Tensor, flat: Tensor, group: dist.ProcessGroup | None = None, async_op: bool = False
) -> dist.Work | None:
    """``out`` = this rank's 1/W slice of Σ over the W ranks of ``group`` of ``flat`` (both on the compute
    device); with ``async_op`` the returned work must be waited for before ``out`` is read."""
    _count("reduce_scatter", flat)
    return dist.reduce_scatter_tensor(out, flat, op=dist.ReduceOp.SUM, group=group, async_op=async_op)
