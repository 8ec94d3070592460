"""The reference policy π_ref of the DPO-style losses: one small type, :class:`Reference`.

Every reference answers ``logps(batch) -> [R]`` (sequence log-probs of the batch's rows, under
``torch.no_grad``), or None for :class:`NoReference`. The kinds a run configures (``model.reference``):

* ``adapter`` — :class:`AdapterReference`: with LoRA, the policy with its adapters disabled (no second
  copy of the weights), as TRL does.
* ``copy`` — :class:`FrozenReference`: with full fine-tuning, a frozen copy of the initial policy.
* ``cached`` — :class:`CachedReference`: log-probs of every row computed once (by one of the above) and
  kept on disk, keyed by the model (name, revision, dtype, a fingerprint of the initial weights), the
  tokenised data and the tokenisation, so a sweep over weights or methods computes them once. Under
  several processes the table is computed by all of them, each its block of rows, and gathered
  (:func:`shared_reference_table`); the key is checked equal across processes.
* ``none`` — :class:`NoReference`: reference-free losses only (AMoPO, SimPO).

``share_prompt`` (``model.share_prompt``) makes the adapter-disabled and frozen references (and so the
cached table they compute) run each pair's prompt once (:func:`reference_logps`). Every kind takes
packed batches (data/packing.py; the cached table is always computed from padded ones, looked up by
``row_index``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from raco.atomic import atomic_write
from raco.data.packing import is_packed
from raco.losses.logps import Batch, response_logps
from raco.losses.shared_prefix import shared_prefix_logps
from raco.models.offline import cache_dir
from raco.shard import (
    any_across,
    check_same,
    gather_contiguous,
    rank_and_world,
    rounds,
    shard_range,
)


def reference_logps(model: nn.Module, batch: Batch, chunk_tokens: int | None, share_prompt: bool) -> Tensor:
    """``[R]`` response log-probs of ``model`` (call under ``torch.no_grad``): ``response_logps``, or with
    ``share_prompt`` each pair's prompt run once and both responses continued from its key/value cache
    (``raco.losses.shared_prefix``: the same numbers, P + |y¹| + |y²| tokens per pair instead of 2P + …);
    ``chunk_tokens`` as ``response_logps``'s. A packed ``batch`` (data/packing.py) gives the same numbers
    as padded; not with ``share_prompt``."""
    if share_prompt:
        if is_packed(batch):
            raise ValueError("model.share_prompt: not with a packed batch (data.packing)")
        return shared_prefix_logps(model, batch, chunk_tokens=chunk_tokens)[0]
    return response_logps(model, batch, chunk_tokens=chunk_tokens)[0]


class Reference(ABC):
    """π_ref: ``logps(batch)`` gives the reference log-probs ``[R]`` of the batch's rows (None: none)."""

    kind: ClassVar[str]

    @abstractmethod
    def logps(self, batch: Batch) -> Tensor | None:
        """Sequence log-probs ``[R]`` of ``batch``'s rows under π_ref, without gradient."""

    def to(self, device: torch.device | str) -> Reference:
        """Move what the reference holds to ``device`` (in place); returns self."""
        return self


class NoReference(Reference):
    """No reference policy: for runs whose every loss is reference-free; ``logps`` is None."""

    kind = "none"

    def logps(self, batch: Batch) -> None:
        return None


NO_REFERENCE = NoReference()


class AdapterReference(Reference):
    """The peft ``policy`` with its adapters disabled (the base model the adapters were added to)."""

    kind = "adapter"

    def __init__(
        self, policy: nn.Module, chunk_tokens: int | None = None, share_prompt: bool = False
    ) -> None:
        inner = getattr(policy, "module", policy)  # DistributedDataParallel
        if not hasattr(inner, "disable_adapter"):
            raise ValueError("an adapter-disabled reference needs a peft model (LoRA)")
        self.policy, self.chunk_tokens = policy, chunk_tokens  # chunk_tokens: see response_logps
        self.share_prompt = share_prompt  # see reference_logps

    def logps(self, batch: Batch) -> Tensor:
        inner = getattr(self.policy, "module", self.policy)
        with torch.no_grad(), inner.disable_adapter():
            return reference_logps(self.policy, batch, self.chunk_tokens, self.share_prompt)


class FrozenReference(Reference):
    """A model whose weights are π_ref (see :func:`frozen_copy` for a frozen copy of the policy)."""

    kind = "copy"

    def __init__(self, model: nn.Module, chunk_tokens: int | None = None, share_prompt: bool = False) -> None:
        self.model, self.chunk_tokens = model, chunk_tokens  # chunk_tokens: see response_logps
        self.share_prompt = share_prompt  # see reference_logps

    def logps(self, batch: Batch) -> Tensor:
        with torch.no_grad():
            return reference_logps(self.model, batch, self.chunk_tokens, self.share_prompt)

    def to(self, device: torch.device | str) -> FrozenReference:
        self.model.to(device)
        return self


class CachedReference(Reference):
    """Reference log-probs looked up by ``batch["row_index"]`` in a ``[N, 2]`` table (y¹, y²)."""

    kind = "cached"

    def __init__(self, table: Tensor) -> None:
        self.table = table

    def logps(self, batch: Batch) -> Tensor:
        rows = self.table[batch["row_index"].cpu()]
        return torch.cat([rows[:, 0], rows[:, 1]]).to(batch["input_ids"].device)


def resolve_reference_kind(kind: str, lora: bool, needs_reference: bool) -> str:
    """The concrete reference kind for ``kind`` (``auto`` → adapter with LoRA, else copy; none if unused)."""
    if not needs_reference:
        return "none"
    if kind == "auto":
        return "adapter" if lora else "copy"
    if kind == "none":
        raise ValueError("model.reference: `none` only works when every objective's loss is reference-free")
    if kind == "adapter" and not lora:
        raise ValueError("model.reference: `adapter` needs LoRA; use `copy` or `cached`")
    return kind


def frozen_copy(
    model: nn.Module, chunk_tokens: int | None = None, share_prompt: bool = False
) -> FrozenReference:
    """A frozen, eval-mode deep copy of ``model`` as a reference."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return FrozenReference(reference, chunk_tokens, share_prompt)


def weights_fingerprint(model: nn.Module, frozen_only: bool = False) -> str:
    """A cheap fingerprint of every weight (shape, sum, sum of squares in float64), hex.

    ``frozen_only``: of the weights that do not train (and the buffers) only — what an adapter-disabled
    reference reads. A LoRA policy's adapters start random by the seed (A) and at zero (B) and are off
    in the reference, so runs that differ only by seed share one reference table."""
    digest = hashlib.sha256()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad} if frozen_only else set()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in trainable:
                continue
            t = tensor.detach().to(torch.float64)
            digest.update(
                f"{name}{tuple(t.shape)}{t.sum().item():.12e}{t.square().sum().item():.12e}".encode()
            )
    return digest.hexdigest()[:16]


def pairs_fingerprint(pairs: Sequence[dict]) -> str:
    """Fingerprint of tokenised pairs (prompt and response ids in order): data + tokenisation."""
    digest = hashlib.sha256()
    for pair in pairs:
        ids = (pair["row_index"], pair["prompt_ids"], pair["response_1_ids"], pair["response_2_ids"])
        digest.update(json.dumps(ids).encode())
    return digest.hexdigest()[:16]


def compute_reference_table(
    reference: Reference, batches: Callable[[], Iterable[Batch]], n_rows: int, first_row: int = 0
) -> Tensor:
    """``[n_rows, 2]`` log-probs of ``reference`` (y¹, y²) for rows ``first_row … first_row + n_rows − 1``
    (by ``row_index``), which ``batches()`` must cover exactly."""
    table = torch.full((n_rows, 2), float("nan"), dtype=torch.float32)
    for batch in batches():
        logps = reference.logps(batch)
        if logps is None:
            raise ValueError("a reference log-prob table needs a reference policy (not `none`)")
        logps = logps.float().cpu()
        first, second = logps.chunk(2)
        table[batch["row_index"].cpu() - first_row] = torch.stack([first, second], dim=1)
    if torch.isnan(table).any():
        raise RuntimeError("reference log-probs missing for some rows")
    return table


def shared_reference_table(
    reference: Reference,
    pairs: Sequence[dict],
    make_batch: Callable[[Sequence[dict]], Batch],
    batch_size: int,
    *,
    device: torch.device | None = None,
    progress: bool = False,
) -> Tensor:
    """The ``[len(pairs), 2]`` table of :func:`compute_reference_table`, computed by all processes
    together and the same on each (call on every process; one process computes it alone).

    The rows are cut into the batches one process would use (``pairs[b·size : (b+1)·size]``, where
    ``row_index`` is a pair's position); process r computes the contiguous block
    ``shard_range(B, r, W)`` of them and the blocks are all-gathered on ``device`` (the model's): every
    row's log-probs are those of the 1-process table, bit for bit (same batch, same padding). The
    processes run the same number of forward passes (a dummy one where a block is one batch short),
    as a sharded or DDP-wrapped model needs. ``progress``: a bar on process 0 over its own rows."""
    rank, world = rank_and_world()
    starts = range(0, len(pairs), batch_size)
    mine = shard_range(len(starts), rank, world)
    rows = range(min(mine.start * batch_size, len(pairs)), min(mine.stop * batch_size, len(pairs)))
    label = "reference log-probs" + (
        f" (process 0 of {world}, {len(pairs)} rows in all)" if world > 1 else ""
    )
    bar = tqdm(total=len(rows), desc=label, unit="row", disable=not progress or rank != 0)

    def batches() -> Iterator[Batch]:
        for b in mine:
            chunk = pairs[starts[b] : starts[b] + batch_size]
            yield make_batch(chunk)
            bar.update(len(chunk))

    with bar:
        local = compute_reference_table(reference, batches, len(rows), rows.start)
    if world > 1 and starts and len(mine) < rounds(len(starts), world):
        with torch.no_grad():
            reference.logps(make_batch(pairs[:batch_size]))  # the others' last forward: a collective
    return gather_contiguous(local, device)


def _cache_path(key_parts: dict, root: Path | None) -> Path:
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
    return (root or cache_dir()) / "reference-logps" / f"{key}.safetensors"


def cached_reference(
    key_parts: dict,
    compute: Callable[[], Tensor],
    root: Path | None = None,
    device: torch.device | None = None,
) -> CachedReference:
    """Load the table keyed by ``key_parts`` from the cache, or ``compute()`` and store it atomically.

    Under several processes call it on every process, with a collective ``compute`` (such as
    :func:`shared_reference_table`): every part of the key (fingerprints of weights and data included)
    is checked equal across processes first (a ``RuntimeError`` naming the parts that differ); the
    table is loaded when every process finds the file, else computed by all; process 0 writes it
    (atomically: readers see the whole file or none). ``device``: where the checks' tensors live."""
    check_same(
        {k: json.dumps(v, sort_keys=True) for k, v in key_parts.items()}, "reference log-prob cache", device
    )
    path = _cache_path(key_parts, root)
    if not any_across(not path.is_file(), device):
        return CachedReference(load_file(str(path))["logps"])
    table = compute()
    if rank_and_world()[0] == 0:
        metadata = {"key": json.dumps(key_parts, sort_keys=True)}
        atomic_write(path, lambda tmp: save_file({"logps": table.contiguous()}, str(tmp), metadata=metadata))
    return CachedReference(table)
