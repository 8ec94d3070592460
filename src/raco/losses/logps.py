"""Per-row sequence log-probabilities of responses (the policy's; π_ref's through raco.models.reference).

For row r with tokens t_0..t_{T-1} and response mask m (True exactly at response tokens; m_0 = False),

    log π(y_r | x_r) = Σ_{t ≥ 1} m_{r,t} · log softmax(z_{r,t-1})[t_{r,t}]

where z_{r,t-1} are the logits at position t−1 (next-token prediction). Lengths |y_r| = Σ_t m_{r,t}.
Gathering is done in float32 whatever the model dtype (as TRL and torchtune do).

Packed batches (data/packing.py: one row ``[1, N]`` of concatenated rows, ``row_ids [N]``, per-row
``position_ids``, no attention mask) give the same per-row numbers: the kept positions t − 1 of response
tokens t never cross a row boundary (a row's first token is never a response token), and each kept
position's log-prob is added to row ``row_ids[t − 1]``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from raco.data.packing import forward_inputs, is_packed, row_count

Batch = Mapping[str, Any]
HeadHook = Callable[[Tensor], None]


def sequence_logps(logits: Tensor, input_ids: Tensor, response_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of response-token log-probs per row, and response lengths.

    Args:
        logits: ``[R, T, V]`` next-token logits (position t predicts token t+1).
        input_ids: ``[R, T]`` token ids.
        response_mask: ``[R, T]`` bool, True at response tokens (never at position 0).

    Returns:
        ``(logps [R] float32, lengths [R] float32)``.
    """
    mask = response_mask[:, 1:].bool()
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logps = logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    logps = (token_logps * mask).sum(dim=1)
    return logps, mask.sum(dim=1).float()


def unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The Hugging Face ``*ForCausalLM`` inside a peft/DDP wrapper (LoRA layers are injected in place)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(inner, "get_base_model"):  # peft.PeftModel
        inner = inner.get_base_model()
    return inner


def logit_positions(response_mask: Tensor) -> Tensor:
    """``[R, T]`` bool: position t−1 for every response token t (the logits that predict it)."""
    keep = torch.zeros_like(response_mask, dtype=torch.bool)
    keep[:, :-1] = response_mask[:, 1:].bool()
    return keep


@functools.cache
def _selects_positions(forward_type: type[nn.Module]) -> bool:
    """Whether a ``*ForCausalLM.forward`` takes ``logits_to_keep`` (188 of the 196 causal LMs of
    transformers 5.24 do, through ``slice_logits_to_keep``, which accepts a boolean ``[R, T]`` mask)."""
    return "logits_to_keep" in inspect.signature(forward_type.forward).parameters


def kept_logits(causal_lm: nn.Module, batch: Batch, keep: Tensor) -> Tensor:
    """The model's own logits ``[N, V]`` at the ``keep`` positions, in row-major order.

    The model's forward is run, so everything it does to the logits is included (Gemma-2/3's final
    soft-capping, Cohere's ``logit_scale``, Granite's ``logits_scaling``, Falcon-H1's multiplier, ...);
    ``logits_to_keep=keep`` makes it project only the kept hidden states through the LM head (as TRL's
    DPO does), so nothing ``[R, T, V]``-sized is formed. Models without ``logits_to_keep`` give full
    logits, then indexed."""
    inputs = forward_inputs(batch)
    if _selects_positions(type(causal_lm)):  # type: ignore[arg-type]  # mypy: type[Any] (torch unread) is not Hashable
        logits = causal_lm(**inputs, logits_to_keep=keep).logits
    else:
        logits = causal_lm(**inputs).logits
        logits = logits[keep] if logits.dim() == 3 and logits.shape[:2] == keep.shape else logits
    n = int(keep.sum())
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ValueError(
            f"{type(causal_lm).__name__} returned logits of shape {tuple(logits.shape)} for {n} kept "
            "positions: raco needs a causal LM whose forward gives next-token logits per position"
        )
    return logits


def kept_rows(batch: Batch, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(rows [N], targets [N], lengths [R] float32)`` of the ``keep`` positions (``logit_positions``)
    in row-major order: the row each belongs to (a packed batch's ``row_ids``), the token it predicts
    (the next one), and the response length |y_r| of every row."""
    lead, cols = keep.nonzero(as_tuple=True)
    targets = batch["input_ids"][lead, cols + 1]
    if not is_packed(batch):
        return lead, targets, keep.sum(dim=1).float()
    rows = batch["row_ids"][cols]
    lengths = torch.zeros(row_count(batch), dtype=torch.float32, device=rows.device)
    return rows, targets, lengths.index_add_(0, rows, torch.ones_like(rows, dtype=torch.float32))


def response_logps(
    model: nn.Module,
    batch: Batch,
    on_head_rows: HeadHook | None = None,
    chunk_tokens: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Policy log-probs ``(logps [R], lengths [R])``, equal to ``sequence_logps(model(...).logits, ...)``.

    The logits are the model's own (``kept_logits``), computed only at the N positions whose next token
    is a response token: hidden states ``h[r, t-1]`` for every ``m[r, t]``. ``on_head_rows`` (if given)
    receives the ``[N]`` row index of those positions before the forward (the fused gradient path maps
    the LM head's inputs to rows with it). ``batch`` may be padded or packed (module docstring).

    ``chunk_tokens=C`` runs ``raco.losses.chunked.chunked_response_logps`` instead: the same numbers
    (to float32 rounding) with logits formed for C positions at a time and recomputed in the backward,
    so no ``[N, V]`` tensor is held; ``on_head_rows`` then receives each chunk's ``[C]`` rows before the
    head projects that chunk.
    """
    if chunk_tokens is not None:
        from raco.losses.chunked import chunked_response_logps  # chunked imports this module

        return chunked_response_logps(model, batch, chunk_tokens, on_head_rows)
    causal_lm = unwrap_causal_lm(model)
    keep = logit_positions(batch["response_mask"])
    rows, targets, lengths = kept_rows(batch, keep)
    if on_head_rows is not None:
        on_head_rows(rows)
    logits = kept_logits(causal_lm, batch, keep).float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    logps = torch.zeros(len(lengths), dtype=token_logps.dtype, device=token_logps.device).index_add(
        0, rows, token_logps
    )
    return logps, lengths
