"""Per-objective gradients sharded like FSDP2's parameters: reduce-scattered from the hooks, in buckets.

FSDP2 shards a parameter of d₀ rows on dim 0 over W ranks (``Shard(0)``): rank r holds rows
[r·c, min((r+1)·c, d₀)) with c = ⌈d₀ / W⌉ (trailing ranks may hold fewer rows, or none). A
per-objective gradient G ∈ R^{k × d₀ × rest} formed on one rank (from that rank's rows) becomes the
rank's shard of Σ_ranks G through one reduce-scatter of the row-blocked layout

    G → Gᵀ₀₁ ∈ R^{d₀ × k × rest} → zero-pad to W·c rows → [W, c·k·rest]   (block r is rank r's rows),

and many such layouts travel together: a bucket concatenates them along the second axis, so one
reduce-scatter of [W, Σ c·k·rest] gives every rank its [Σ c·k·rest] slice. Buckets are sent
asynchronously as soon as they fill, while the backward goes on; ``finish`` waits for them.

Each rank thus keeps k shards per parameter: the per-objective store costs 4·k·P/W bytes, not 4·k·P.
Parameters that are not sharded (plain tensors under FSDP2) are summed locally here and all-reduced
with the rest of a replicated store (see ``replicated``).

The plain and scalarized paths use FSDP2's own reduction instead (``backward_shards``): a backward
through FSDP's hooks reduce-scatters each parameter's gradient — the mean over the W ranks — into
its sharded ``.grad``; W × that is the rank's shard of the sum. One backward per objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Shard

from raco.gradients import collectives
from raco.gradients.store import ParamGrads, accumulate_into


def backward_shards(loss: Tensor, params: list[Tensor], retain_graph: bool) -> tuple[ParamGrads, set[int]]:
    """Backward of ``loss`` through FSDP2's hooks; returns ``{id(p): this rank's shard of Σ_ranks ∂loss/∂p}``
    and the keys of unsharded parameters (their gradients are this rank's, to be all-reduced), and
    leaves every ``.grad`` as it was before."""
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    loss.backward(retain_graph=retain_graph)
    out: ParamGrads = {}
    replicated: set[int] = set()
    for p, before in zip(params, saved, strict=True):
        g, p.grad = p.grad, before
        if isinstance(g, DTensor):  # FSDP2 reduce-scattered the mean over the mesh's ranks
            out[id(p)] = g.to_local() * g.device_mesh.size()
        elif g is not None:
            out[id(p)] = g
            replicated.add(id(p))
    return out, replicated


def local_zeros(p: Tensor) -> Tensor:
    """Zeros shaped like this rank's part of ``p`` (its shard when sharded)."""
    return torch.zeros_like(p.to_local() if isinstance(p, DTensor) else p)


def is_sharded(p: Tensor) -> bool:
    """Whether ``p`` is an FSDP2-sharded parameter (a DTensor)."""
    return isinstance(p, DTensor)


IN_FLIGHT = 2  # buckets outstanding at once when shards are consumed as they arrive


@dataclass(frozen=True)
class ShardGeometry:
    """Where rank ``rank``'s rows of a ``Shard(0)`` parameter sit: rows [rank·chunk, rank·chunk + rows)."""

    world: int
    chunk: int
    rows: int
    group: dist.ProcessGroup

    @staticmethod
    def of(p: DTensor) -> ShardGeometry:
        if p.device_mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
            raise ValueError(
                f"per-objective gradients are sharded only for FSDP2's 1-D Shard(0) layout; got "
                f"{tuple(p.placements)} on a {p.device_mesh.ndim}-D mesh"
            )
        world = p.device_mesh.size()
        return ShardGeometry(
            world, math.ceil(p.shape[0] / world), p.to_local().shape[0], p.device_mesh.get_group()
        )


def row_blocks(g: Tensor, geometry: ShardGeometry) -> Tensor:
    """``[k, d₀, *rest]`` → ``[W, c·k·rest]``: row block r (zero-padded) holds rank r's rows."""
    t = g.transpose(0, 1)
    pad = geometry.world * geometry.chunk - t.shape[0]
    if pad:
        t = torch.cat([t, t.new_zeros((pad, *t.shape[1:]))])
    return t.reshape(geometry.world, -1)


@dataclass
class _Bucket:
    blocks: list[Tensor] = field(default_factory=list)
    entries: list[tuple[int, ShardGeometry, torch.Size]] = field(default_factory=list)
    nbytes: int = 0


@dataclass
class ShardedReducer:
    """Reduce-scatters ``[k, *shape]`` per-objective gradients into per-rank shards as they are formed.

    ``add(key, grad)`` for every contribution (in the same order on every rank: the backward's order);
    ``finish()`` returns this micro-batch's ``{key: [k, rows, *rest]}`` shards (summed over ranks) and
    the locally summed gradients of unsharded parameters (whose keys are in ``replicated``).

    With ``consume`` (the engine's ``store="gram"``), each shard is handed to ``consume(key, shard)``
    as soon as its bucket has arrived instead of being kept, and at most ``IN_FLIGHT`` buckets are
    outstanding (older ones are waited for when a new one is sent), so the shards never accumulate;
    ``finish`` then returns only the unsharded parameters' sums. ``consume`` must not depend on the
    order shards arrive in across buckets beyond the backward's (it is the same on every rank)."""

    params: Mapping[int, Tensor]
    bucket_bytes: int = collectives.BUCKET_BYTES
    replicated: set[int] = field(default_factory=set)
    _bucket: _Bucket = field(default_factory=_Bucket)
    _pending: list[tuple[dist.Work | None, Tensor, Tensor, _Bucket]] = field(default_factory=list)
    _out: ParamGrads = field(default_factory=dict)
    _geometry: dict[int, ShardGeometry] = field(default_factory=dict)
    consume: Callable[[int, Tensor], None] | None = None

    def add(self, key: int, grad: Tensor) -> None:
        p = self.params[key]
        if not is_sharded(p):
            self.replicated.add(key)
            accumulate_into(self._out, {key: grad})
            return
        if key not in self._geometry:
            self._geometry[key] = ShardGeometry.of(p)
        geometry = self._geometry[key]
        if geometry.world == 1:  # the shard is the whole parameter: nothing to reduce
            accumulate_into(self._out, {key: grad})
            return
        blocks, shape = row_blocks(grad, geometry), grad.shape
        del grad  # the caller's reference aside, only the row blocks are kept from here
        bucket = self._bucket
        nbytes = blocks.numel() * blocks.element_size()
        other_group = bool(bucket.entries) and bucket.entries[0][1].group is not geometry.group
        if other_group or (bucket.entries and nbytes >= self.bucket_bytes):
            self._flush()  # a parameter as big as a bucket travels alone, without a concatenated copy
            bucket = self._bucket
        bucket.blocks.append(blocks)
        bucket.entries.append((key, geometry, shape))
        bucket.nbytes += nbytes
        if bucket.nbytes >= self.bucket_bytes:
            self._flush()

    def _flush(self) -> None:
        bucket, self._bucket = self._bucket, _Bucket()
        if not bucket.entries:
            return
        blocks = bucket.blocks
        flat = blocks[0].reshape(-1) if len(blocks) == 1 else torch.cat(blocks, dim=1).reshape(-1)
        bucket.blocks = []  # the flat copy is what travels; the blocks can go
        world = bucket.entries[0][1].world
        out = flat.new_empty(flat.numel() // world)
        work = collectives.reduce_scatter_(out, flat, group=bucket.entries[0][1].group, async_op=True)
        self._pending.append((work, flat, out, bucket))  # the input lives until the work is done
        if self.consume is not None and len(self._pending) > IN_FLIGHT:
            self._drain(len(self._pending) - IN_FLIGHT)

    def _drain(self, n: int) -> None:
        """Wait for the ``n`` oldest buckets and hand out (or keep) their shards."""
        done, self._pending = self._pending[:n], self._pending[n:]
        for work, _flat, out, bucket in done:
            if work is not None:
                work.wait()
            offset = 0
            for key, geometry, shape in bucket.entries:
                k, rest = shape[0], shape[2:]
                n_entries = geometry.chunk * k * math.prod(rest)
                piece = out[offset : offset + n_entries].view(geometry.chunk, k, *rest)[: geometry.rows]
                shard = piece.transpose(0, 1).contiguous()
                if self.consume is not None:
                    self.consume(key, shard)
                else:
                    accumulate_into(self._out, {key: shard})
                offset += n_entries

    def finish(self) -> ParamGrads:
        """Wait for every bucket; this rank's shards ``{key: [k, rows, *rest]}`` (and unsharded sums)."""
        self._flush()
        self._drain(len(self._pending))
        out, self._out = self._out, {}
        return out
