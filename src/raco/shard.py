"""Work split across processes and gathered back, so that N processes give the numbers of one.

A list of B work items (batches of held-out rows, batches of prompts to answer, blocks of reference
rows) is split in one of two deterministic ways, process r of W taking

* ``contiguous``: items ``⌊B·r/W⌋ … ⌊B·(r+1)/W⌋ − 1`` (a block; used when B is known in advance), or
* ``strided``: items ``b`` with ``b mod W = r`` (used while streaming, before B is known).

Each item is processed exactly as one process would (same batch, same padding), so the per-item
results are bit-identical; they are gathered in item order (:func:`gather_contiguous`,
:func:`gather_strided`) and any sum over them is then taken in the same order on every process: the
result equals the 1-process one exactly, not merely to rounding.

Every tensor given to a collective lives on the compute device (NCCL rejects CPU tensors): the
functions take ``device`` (the model's), defaulting to :func:`collective_device` (the current CUDA
device under NCCL, else the CPU), and give results back on the device of their input.

Under a sharded model (FSDP2, :func:`is_sharded`) every forward pass is itself a collective (the layers
all-gather their weights), and so is a DistributedDataParallel forward (it broadcasts the buffers), so
processes must run the same number of forward passes: a process whose share is one item short of
:func:`rounds` runs a dummy item (its result discarded). Forward passes of shared work are cheap enough
to always run in this lockstep (at most one extra item per process); generation does so only when
sharded (with transformers' ``synced_gpus``).
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """(rank, number of processes) of ``torch.distributed``; (0, 1) when it is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device() -> torch.device:
    """Where collective tensors must live: the current CUDA device under NCCL, else the CPU."""
    if dist.is_available() and dist.is_initialized() and "nccl" in str(dist.get_backend()).lower():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model``'s parameters are sharded across processes (DTensors: FSDP2 ``fully_shard``)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def local_module(model: nn.Module) -> nn.Module:
    """The module a DistributedDataParallel wrapper holds (its forward broadcasts buffers), else
    ``model``: replicated weights need no collective to run forward."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def shard_range(n: int, rank: int, world: int) -> range:
    """The contiguous block of ``range(n)`` of process ``rank`` of ``world``: ``⌊n·r/W⌋ … ⌊n·(r+1)/W⌋``
    (block sizes differ by at most one; the blocks cover ``range(n)`` in order)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of {world} processes")
    return range(n * rank // world, n * (rank + 1) // world)


def rounds(n: int, world: int) -> int:
    """Items per process when the largest share is padded to: ``⌈n / W⌉``."""
    return -(-n // world)


def _all_gather_padded(local: Tensor, device: torch.device | None) -> list[Tensor]:
    """Every process's ``local`` ``[m_r, *]`` (m_r may differ), in rank order, on ``local.device``: one
    all-gather of the sizes, one of the tensors padded to ``max m_r`` rows."""
    _, world = rank_and_world()
    if world == 1:
        return [local]
    device = device or collective_device()
    size = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = torch.zeros((max(counts), *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [part[:count].to(local.device) for part, count in zip(parts, counts, strict=True)]


def gather_contiguous(local: Tensor, device: torch.device | None = None) -> Tensor:
    """The rows of every process's :func:`shard_range` block, concatenated in rank order: the full
    ``[n, *]`` tensor on every process."""
    return torch.cat(_all_gather_padded(local, device))


def gather_strided(local: Tensor, device: torch.device | None = None) -> Tensor:
    """The rows of every process's strided share (row j of process r is item ``r + j·W``), back in item
    order: the full ``[n, *]`` tensor on every process."""
    parts = _all_gather_padded(local, device)
    n = sum(part.shape[0] for part in parts)
    out = torch.empty((n, *local.shape[1:]), dtype=local.dtype, device=local.device)
    for r, part in enumerate(parts):
        out[r :: len(parts)] = part
    return out


def any_across(flag: bool, device: torch.device | None = None) -> bool:
    """Whether ``flag`` is true on some process (every process gets the same answer)."""
    _, world = rank_and_world()
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device or collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _digest(value: str) -> int:
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "little", signed=True)


def check_same(values: dict[str, str], what: str, device: torch.device | None = None) -> None:
    """Raise a ``RuntimeError`` naming the keys of ``values`` whose value differs between processes
    (e.g. fingerprints of the data and weights behind a cache key); call on every process. One
    all-gather of one 64-bit hash per key (the keys must be the same on every process)."""
    _, world = rank_and_world()
    if world == 1:
        return
    names = sorted(values)
    mine = torch.tensor([_digest(values[k]) for k in names], dtype=torch.int64)
    every = torch.stack(_all_gather_padded(mine[:, None], device))[..., 0]  # [W, len(names)]
    differ = [name for j, name in enumerate(names) if bool((every[:, j] != every[0, j]).any())]
    if differ:
        raise RuntimeError(
            f"{what}: the processes disagree on {', '.join(differ)} (this process: "
            + "; ".join(f"{k}={values[k]}" for k in differ)
            + "): every process must load the same data and the same weights"
        )


def gather_objects(value: T) -> list[T]:
    """``value`` of every process in rank order, on every process (picklable values; ``[value]`` alone).
    Under NCCL torch carries the pickles on the current CUDA device."""
    _, world = rank_and_world()
    if world == 1:
        return [value]
    out: list = [None] * world
    dist.all_gather_object(out, value)
    return out
