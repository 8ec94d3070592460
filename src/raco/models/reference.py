"""The reference policy π_ref of the DPO-style losses.

* ``adapter`` — with LoRA, the policy with its adapters disabled (no second copy of the weights).
* ``copy`` — with full fine-tuning, a frozen copy of the initial policy.
* ``cached`` — reference log-probs of every row computed once and kept on disk, keyed by the model
  (name, revision, dtype, a fingerprint of the initial weights), the tokenised data and the
  tokenisation, so a sweep over weights or methods computes them once.
* ``none`` — reference-free losses only (AMoPO, SimPO).

The training session turns the kind into what :class:`raco.gradients.GradientEngine` takes as
``reference``: a frozen module, a :class:`CachedReference` (``batch -> logps [2B]``), or None (peft:
adapters disabled).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from raco.atomic import atomic_write
from raco.losses import reference_logps
from raco.models.offline import cache_dir

Batch = dict[str, Tensor]


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


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode deep copy of ``model``."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def weights_fingerprint(model: nn.Module) -> str:
    """A cheap fingerprint of every weight (shape, sum, sum of squares in float64), hex."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
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


class CachedReference:
    """Reference log-probs looked up by ``batch["row_index"]`` from a ``[N, 2]`` table (y¹, y²)."""

    def __init__(self, table: Tensor) -> None:
        self.table = table

    def __call__(self, batch: Batch) -> Tensor:
        rows = self.table[batch["row_index"].cpu()]
        return torch.cat([rows[:, 0], rows[:, 1]]).to(batch["input_ids"].device)


def compute_reference_table(
    policy: nn.Module,
    reference: nn.Module | None,
    batches: Callable[[], list[Batch]],
    n_rows: int,
) -> Tensor:
    """``[n_rows, 2]`` reference log-probs over ``batches()`` (frozen ``reference`` or adapters off)."""
    table = torch.full((n_rows, 2), float("nan"), dtype=torch.float32)
    for batch in batches():
        logps = reference_logps(reference, batch, policy=policy).float().cpu()
        first, second = logps.chunk(2)
        table[batch["row_index"].cpu()] = torch.stack([first, second], dim=1)
    if torch.isnan(table).any():
        raise RuntimeError("reference log-probs missing for some rows")
    return table


def cached_reference(
    key_parts: dict,
    compute: Callable[[], Tensor],
    root: Path | None = None,
) -> CachedReference:
    """Load the table keyed by ``key_parts`` from the cache, or ``compute()`` and store it atomically."""
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
    folder = (root or cache_dir()) / "reference-logps"
    path = folder / f"{key}.safetensors"
    if path.is_file():
        return CachedReference(load_file(str(path))["logps"])
    table = compute()
    metadata = {"key": json.dumps(key_parts, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file({"logps": table.contiguous()}, str(tmp), metadata=metadata))
    return CachedReference(table)
