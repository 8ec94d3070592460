"""Per-row sequence log-probabilities of responses, for the policy and the reference.

For row r with tokens t_0..t_{T-1} and response mask m (True exactly at response tokens; m_0 = False),

    log π(y_r | x_r) = Σ_{t ≥ 1} m_{r,t} · log softmax(z_{r,t-1})[t_{r,t}]

where z_{r,t-1} are the logits at position t−1 (next-token prediction). Lengths |y_r| = Σ_t m_{r,t}.
Gathering is done in float32 whatever the model dtype (as TRL and torchtune do).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

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


def _causal_lm(model: nn.Module) -> nn.Module:
    """The Hugging Face ``*ForCausalLM`` inside a peft/DDP wrapper (LoRA layers are injected in place)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(inner, "get_base_model"):  # peft.PeftModel
        inner = inner.get_base_model()
    return inner


def response_logps(
    model: nn.Module, batch: Batch, on_head_rows: HeadHook | None = None
) -> tuple[Tensor, Tensor]:
    """Policy log-probs ``(logps [R], lengths [R])`` projecting only response positions through the LM head.

    Equal to ``sequence_logps(model(...).logits, ...)`` but, like TRL's fused LM head, it runs the
    ``[hidden → vocab]`` projection only at the N positions whose next token is a response token:
    hidden states ``h[r, t-1]`` for every ``m[r, t]``. ``on_head_rows`` (if given) receives the ``[N]``
    row index of those positions just before the head runs (the fused gradient path needs it).
    """
    causal_lm = _causal_lm(model)
    backbone = getattr(causal_lm, causal_lm.base_model_prefix)
    head = causal_lm.get_output_embeddings()
    hidden = backbone(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    mask = batch["response_mask"][:, 1:].bool()
    rows, cols = mask.nonzero(as_tuple=True)
    if on_head_rows is not None:
        on_head_rows(rows)
    logits = head(hidden[:, :-1][rows, cols]).float()
    targets = batch["input_ids"][:, 1:][rows, cols]
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    n_rows = batch["input_ids"].shape[0]
    logps = torch.zeros(n_rows, dtype=token_logps.dtype, device=token_logps.device).index_add(
        0, rows, token_logps
    )
    return logps, mask.sum(dim=1).float()


def _adapter_disabled(model: nn.Module) -> contextlib.AbstractContextManager:
    inner = getattr(model, "module", model)
    if hasattr(inner, "disable_adapter"):
        return inner.disable_adapter()
    raise ValueError("no reference given and the model has no peft adapter to disable")


Reference = nn.Module | Callable[[Batch], Tensor] | None


def reference_logps(reference: Reference, batch: Batch, policy: nn.Module | None = None) -> Tensor:
    """Reference sequence log-probs ``[R]`` under ``torch.no_grad``.

    ``reference`` is a frozen model, a callable ``batch -> logps``, or None: then ``policy`` must be a
    peft model and its base model (adapters disabled) is the reference, as in TRL.
    """
    with torch.no_grad():
        if reference is None:
            if policy is None:
                raise ValueError("reference_logps needs a reference model or a peft policy")
            with _adapter_disabled(policy):
                return response_logps(policy, batch)[0]
        if isinstance(reference, nn.Module):
            return response_logps(reference, batch)[0]
        return reference(batch).detach()
