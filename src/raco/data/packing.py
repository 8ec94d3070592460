"""Padding-free (packed) pair batches: the rows of a padded batch concatenated into one sequence.

A padded batch (data/collate.py) of R = 2B rows computes R · T tokens, T the longest row; a packed one
holds the same rows in the same order without their padding, N = Σ_r |row r| tokens:

* ``input_ids`` LongTensor [1, N]: row 0's tokens, then row 1's, ... (rows b: y¹ of pair b, B + b: y²).
* ``position_ids`` LongTensor [1, N]: the position of each token in its own row (0 at every row start).
* ``row_ids`` LongTensor [N]: the row of each token (non-decreasing, 0 … R − 1).
* ``response_mask`` BoolTensor [1, N]: the padded batch's mask at the kept tokens (never True at a row's
  first token, so the logits of a row's last token never predict the next row's first).
* ``signs``, ``row_index`` as in the padded batch; ``n_rows`` LongTensor [] = R.

No ``attention_mask``: a causal LM called with position ids that restart at 0, no mask and no cache
(``use_cache=False``) attends within each row only (transformers' masking utilities read the row
boundaries off the position ids and build a block-diagonal causal mask; flash attention takes them as
``cu_seqlens``). A model or attention implementation that does not is caught by the training engine's
check of the first packed micro-batch (gradients/engine.py), never mixed silently.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

Batch = Mapping[str, Any]


def is_packed(batch: Batch) -> bool:
    """Whether ``batch`` is packed (has per-token ``row_ids``)."""
    return "row_ids" in batch


def row_count(batch: Batch) -> int:
    """R, the number of rows (2B): ``n_rows`` of a packed batch, the first dimension of a padded one."""
    return int(batch["n_rows"]) if is_packed(batch) else int(batch["input_ids"].shape[0])


def real_tokens(batch: Batch) -> int:
    """Tokens that are not padding: N of a packed batch, Σ attention_mask of a padded one."""
    return int(batch["input_ids"].numel()) if is_packed(batch) else int(batch["attention_mask"].sum())


def computed_tokens(batch: Batch) -> int:
    """Tokens a forward computes: N packed, R · T padded (padding included)."""
    return int(batch["input_ids"].numel())


def forward_inputs(batch: Batch) -> dict[str, Any]:
    """The keyword arguments of a causal LM's (or its decoder's) forward for ``batch``: ids with the
    attention mask (padded) or with the per-row position ids (packed); never a key/value cache."""
    if is_packed(batch):
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}


def pack(batch: Batch) -> dict[str, Tensor]:
    """The packed form of a padded ``batch`` (module docstring): its real tokens (``attention_mask``),
    row by row, with per-row positions p_{r,t} = #{real tokens of row r before t} and row ids."""
    real = batch["attention_mask"].bool()
    n_rows = real.shape[0]
    positions = real.long().cumsum(dim=1) - 1
    rows = torch.arange(n_rows, device=real.device).unsqueeze(1).expand_as(real)
    packed = {key: value for key, value in batch.items() if key not in ("input_ids", "attention_mask")}
    packed.update(
        input_ids=batch["input_ids"][real].unsqueeze(0),
        position_ids=positions[real].unsqueeze(0),
        row_ids=rows[real],
        response_mask=batch["response_mask"].bool()[real].unsqueeze(0),
        n_rows=torch.tensor(n_rows, device=real.device),
    )
    return packed


def unpack(packed: Batch, pad_token_id: int = 0) -> dict[str, Tensor]:
    """The right-padded batch of a packed one (the inverse of ``pack`` for right-padded batches; the
    padding's token id is ``pad_token_id``)."""
    row_ids = packed["row_ids"]
    n_rows = row_count(packed)
    lengths = torch.bincount(row_ids, minlength=n_rows)
    width = int(lengths.max()) if n_rows else 0
    columns = packed["position_ids"][0]
    ids = torch.full((n_rows, width), pad_token_id, dtype=torch.long, device=row_ids.device)
    ids[row_ids, columns] = packed["input_ids"][0]
    attention = torch.zeros((n_rows, width), dtype=torch.long, device=row_ids.device)
    attention[row_ids, columns] = 1
    response = torch.zeros((n_rows, width), dtype=torch.bool, device=row_ids.device)
    response[row_ids, columns] = packed["response_mask"][0].bool()
    padded = {
        key: value
        for key, value in packed.items()
        if key not in ("input_ids", "position_ids", "row_ids", "response_mask", "n_rows")
    }
    padded.update(input_ids=ids, attention_mask=attention, response_mask=response)
    return padded


def packing_problem(module: nn.Module) -> str | None:
    """Why ``module``'s forward (a causal LM's, or its decoder's) cannot take a packed batch, else None:
    it takes no ``position_ids`` (the row boundaries), so its rows would attend to each other."""
    parameters = inspect.signature(type(module).forward).parameters.values()
    if any(p.name == "position_ids" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None  # (a forward taking **kwargs may pass them on: the engine's check of the numbers decides)
    return (
        f"{type(module).__name__}.forward takes no `position_ids`, which tell the rows of a packed batch "
        "apart"
    )
