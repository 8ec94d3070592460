"""Response log-probs of a pair batch with each prompt's forward run once (a shared prefix).

The rows of a pair batch (data/collate.py) repeat the prompt: row b is x_b + y¹_b and row B + b is
x_b + y²_b. A causal LM's hidden states and keys/values at the prompt positions depend on the prompt
alone, so they are computed once per pair and both responses are continued from them:

    (K, V, h)[x_b]     = decoder(x_b),                              positions 0 … P_b − 1
    logits[y^s_b]      = decoder(y^s_b | K, V of x_b),              positions P_b … P_b + |y^s_b| − 1
    log π(y^s_b | x_b) = log softmax(z(h_{P_b−1}))[y^s_{b,0}] + Σ_{i ≥ 1} log softmax(z_{P_b+i−1})[y^s_{b,i}]

The first response token is predicted by the prompt's last position (the prompt forward's logits, the
same for y¹ and y²); the others by the continuation. The continuation's attention mask covers the
prompt slots of the cache (padding slots masked) and its own tokens; its position ids continue from
P_b, so rotary/absolute positions are those of the full row. The keys/values stay in autograd's graph
(transformers' ``DynamicCache`` concatenates, never copies in place), so gradients of both responses'
log-probs flow back through the cache into the prompt's forward: the same parameter gradients as
``raco.losses.logps.response_logps`` on the full rows, to float32 rounding.

Tokens computed per pair: P + |y¹| + |y²| instead of 2P + |y¹| + |y²|. Rows may be right- or left-padded:
each row's prompt is its real tokens outside ``response_mask``, its response the tokens inside (they must
follow the prompt). Refused, with a ``SharedPrefixUnsupported`` naming the model type: models without a
key/value cache (recurrent state, no ``past_key_values``), attention other than full causal (chunked,
linear; sliding windows shorter than the batch), and gradient checkpointing with gradients (transformers
drops the cache in checkpointed layers, which would recompute and append to it twice).

Rows for the fused gradient capture (gradients/capture.py): a prompt activation serves both rows of its
pair, so ``on_pairs`` is told, before each decoder forward, the pair of each of its leading rows (the
prompts' forward: pair b is row b; the responses' forward: rows interleaved y¹_0, y²_0, y¹_1, …, so row
j is pair ⌊j/2⌋), and ``on_head_pairs``, before the LM head projects, the pair of each position it
projects (inside the forward; or per chunk with ``chunk_tokens``). The capture then weighs pairs, and
the caller seeds the backward per row (gradients/rows.py ``pair_seeds``).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from raco.losses.chunked import ChunkedLogpsUnsupported, chunks_token_logps
from raco.losses.logps import Batch, HeadHook, _selects_positions, unwrap_causal_lm

FULL_ATTENTION = "full_attention"
SLIDING_ATTENTION = "sliding_attention"


class SharedPrefixUnsupported(ValueError):
    """The model cannot continue responses from a prompt's key/value cache exactly."""


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def cache_argument(causal_lm: nn.Module) -> str | None:
    """The name the model's forward takes its key/value cache by: ``cache`` (transformers ≥ 5.2x),
    ``past_key_values`` (earlier and remote code), or None."""
    parameters = inspect.signature(causal_lm.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def checkpointed(model: nn.Module) -> bool:
    """Whether any layer of ``model`` runs under transformers' gradient checkpointing."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def check_shareable(causal_lm: nn.Module, width: int) -> None:
    """Raise ``SharedPrefixUnsupported`` (naming the model type) unless continuing rows of up to
    ``width`` tokens from a ``DynamicCache`` of their prompt reproduces the full rows' forward."""
    config = _text_config(causal_lm.config)
    what = f"model.share_prompt: {type(causal_lm).__name__} (model type {config.model_type!r})"
    if getattr(causal_lm, "_is_stateful", False):
        raise SharedPrefixUnsupported(f"{what} keeps a recurrent state, not a key/value cache")
    if cache_argument(causal_lm) is None:
        raise SharedPrefixUnsupported(f"{what} takes no `cache` / `past_key_values` (no key/value cache)")
    types = set(getattr(config, "layer_types", None) or [FULL_ATTENTION])
    odd = types - {FULL_ATTENTION, SLIDING_ATTENTION}
    if odd:
        kinds = ", ".join(sorted(odd))
        raise SharedPrefixUnsupported(f"{what} has {kinds} layers (not full causal attention)")
    window = getattr(config, "sliding_window", None)
    used = getattr(config, "use_sliding_window", True)  # Qwen2's switch
    sliding = SLIDING_ATTENTION in types or (window is not None and used)
    if sliding and window is not None and width >= int(window):
        raise SharedPrefixUnsupported(
            f"{what} attends within a sliding window of {window} tokens, and this batch's rows are {width} "
            "long: its cache keeps only the window, so the responses cannot see the whole prompt"
        )
    if checkpointed(causal_lm) and causal_lm.training and torch.is_grad_enabled():
        raise SharedPrefixUnsupported(
            f"{what}: gradient checkpointing drops the key/value cache in its layers; turn "
            "model.gradient_checkpointing off or model.share_prompt off"
        )


def _packed(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The ``mask``-ed tokens of every row moved to its front: ``(ids [R, W], valid [R, W], lengths [R])``
    with W the longest row (padding slots hold token 0, ``valid`` False)."""
    lengths = mask.sum(dim=1)
    width = max(int(lengths.max()), 1) if lengths.numel() else 1
    rows, cols = mask.nonzero(as_tuple=True)
    slot = (mask.long().cumsum(dim=1) - 1)[rows, cols]
    out = ids.new_zeros(ids.shape[0], width)
    out[rows, slot] = ids[rows, cols]
    valid = torch.arange(width, device=ids.device) < lengths[:, None]
    return out, valid, lengths


def split_pairs(batch: Batch) -> dict[str, Tensor]:
    """The prompts ``[B, P]`` (right-padded) and responses ``[2B, Y]`` of a pair batch, rows in the batch's
    order (y¹ of pairs 0…B−1, then y²), with ``valid`` masks and lengths; a ``ValueError`` when the rows
    b and B + b do not share a prompt or a response does not follow its prompt."""
    ids, real = batch["input_ids"], batch["attention_mask"].bool()
    response = batch["response_mask"].bool() & real
    prompt = real & ~response
    n_rows = ids.shape[0]
    if n_rows % 2:
        raise ValueError(f"a pair batch has an even number of rows (y¹ then y²), got {n_rows}")
    positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    last_prompt = torch.where(prompt, positions, -1).amax(dim=1)
    first_response = torch.where(response, positions, ids.shape[1]).amin(dim=1)
    if bool((last_prompt >= first_response).any()):
        raise ValueError("model.share_prompt: every response must follow its prompt in its row")
    prompt_ids, prompt_valid, prompt_lengths = _packed(ids, prompt)
    pairs = n_rows // 2
    first, second = prompt_ids.chunk(2), prompt_lengths.chunk(2)
    if not (torch.equal(second[0], second[1]) and torch.equal(first[0], first[1])):
        raise ValueError("model.share_prompt: rows b and B + b of a pair batch must hold the same prompt")
    if bool((prompt_lengths == 0).any()):
        raise ValueError("model.share_prompt: every row needs at least one prompt token")
    response_ids, response_valid, response_lengths = _packed(ids, response)
    return {
        "prompt_ids": prompt_ids[:pairs],
        "prompt_valid": prompt_valid[:pairs],
        "prompt_lengths": prompt_lengths[:pairs],
        "response_ids": response_ids,
        "response_valid": response_valid,
        "response_lengths": response_lengths,
    }


def _forward(causal_lm: nn.Module, inputs: dict[str, Any], keep: Tensor, chunked: bool) -> tuple[Tensor, Any]:
    """``(out [N, ·], cache)``: the model's own logits ``[N, V]`` at the ``keep`` positions (as
    ``raco.losses.logps.kept_logits``), or with ``chunked`` the decoder's final hidden states ``[N, h]``
    there (for the head in chunks, as ``raco.losses.chunked``); and the key/value cache it returned."""
    if chunked:
        body = getattr(causal_lm, getattr(causal_lm, "base_model_prefix", ""), None)
        if not isinstance(body, nn.Module) or body is causal_lm:
            raise ChunkedLogpsUnsupported(f"{type(causal_lm).__name__} has no decoder module to run alone")
        out = body(**inputs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        values = hidden[keep]
    elif _selects_positions(type(causal_lm)):  # type: ignore[arg-type]  # as in logps.kept_logits
        out = causal_lm(**inputs, logits_to_keep=keep)
        values = out.logits
    else:
        out = causal_lm(**inputs)
        values = out.logits[keep] if out.logits.dim() == 3 else out.logits
    if values.dim() != 2 or values.shape[0] != int(keep.sum()):
        raise SharedPrefixUnsupported(
            f"{type(causal_lm).__name__} returned outputs of shape {tuple(values.shape)} for "
            f"{int(keep.sum())} kept positions"
        )
    cache = getattr(out, "cache", None)
    return values, cache if cache is not None else getattr(out, "past_key_values", None)


def _token_logps(
    causal_lm: nn.Module,
    values: Tensor,
    targets: Tensor,
    chunk_tokens: int | None,
    pairs: Tensor,
    on_head_pairs: HeadHook | None,
) -> Tensor:
    """``[N]`` float32 log softmax(z_n)[y_n] from logits, or from hidden states C at a time (each chunk's
    ``pairs`` given to ``on_head_pairs`` before the head projects it)."""
    if chunk_tokens is None:
        return torch.log_softmax(values.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return chunks_token_logps(causal_lm, values, targets, chunk_tokens, pairs, on_head_pairs)


def shared_prefix_logps(
    model: nn.Module,
    batch: Batch,
    chunk_tokens: int | None = None,
    on_pairs: HeadHook | None = None,
    on_head_pairs: HeadHook | None = None,
) -> tuple[Tensor, Tensor]:
    """``(logps [2B], lengths [2B])`` equal to ``response_logps(model, batch, chunk_tokens=...)`` (module
    docstring), with each pair's prompt run once and both responses continued from its key/value cache.
    ``chunk_tokens=C``: the LM head in chunks of C positions, recomputed in backward (losses/chunked.py).
    ``on_pairs`` / ``on_head_pairs``: told the pair of each decoder input row / head position before
    they run (module docstring; the fused gradient capture's row mapping)."""
    if chunk_tokens is not None and chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be ≥ 1, got {chunk_tokens}")
    causal_lm = unwrap_causal_lm(model)
    check_shareable(causal_lm, int(batch["input_ids"].shape[1]))
    chunked = chunk_tokens is not None
    parts = split_pairs(batch)
    prompt_ids, prompt_valid = parts["prompt_ids"], parts["prompt_valid"]
    prompt_lengths = parts["prompt_lengths"]
    pairs, width = prompt_ids.shape
    device = prompt_ids.device

    # the prompts, once; the last prompt position predicts the first token of both responses
    positions = torch.arange(width, device=device).expand(pairs, width)
    last = positions == (prompt_lengths - 1)[:, None]
    prompt_inputs = {
        "input_ids": prompt_ids,
        "attention_mask": prompt_valid.long(),
        "position_ids": positions,
        "use_cache": True,
    }
    if on_pairs is not None:
        on_pairs(torch.arange(pairs, device=device))
    if on_head_pairs is not None and not chunked:  # the head projects the `last` positions, row-major
        on_head_pairs(last.nonzero(as_tuple=True)[0])
    first, cache = _forward(causal_lm, prompt_inputs, last, chunked)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        raise SharedPrefixUnsupported(
            f"model.share_prompt: {type(causal_lm).__name__} returned no key/value cache to continue from"
        )

    # both responses of each pair continued from its cache, rows interleaved (y¹_0, y²_0, y¹_1, …)
    cache.batch_repeat_interleave(2)
    order = torch.arange(2 * pairs, device=device).reshape(2, pairs).T.reshape(-1)  # batch row of each
    ids, valid = parts["response_ids"][order], parts["response_valid"][order]
    lengths = parts["response_lengths"][order]
    steps = torch.arange(ids.shape[1], device=device)
    keep = steps[None, :] < (lengths - 1)[:, None]  # position i predicts response token i + 1
    has_first = lengths > 0  # an empty response has no first token
    rows = [torch.arange(2 * pairs, device=device)[has_first]]
    first = first.repeat_interleave(2, dim=0)[has_first]  # [2B, V] logits, or [2B, h] hidden states
    token_logps = [
        _token_logps(causal_lm, first, ids[has_first, 0], chunk_tokens, rows[0] // 2, on_head_pairs)
    ]
    if bool(keep.any()):
        response_inputs = {
            "input_ids": ids,
            "attention_mask": torch.cat([prompt_valid.repeat_interleave(2, dim=0), valid], dim=1).long(),
            "position_ids": torch.where(valid, prompt_lengths.repeat_interleave(2)[:, None] + steps, 0),
            cache_argument(causal_lm) or "cache": cache,
            "use_cache": True,
        }
        rest_rows, cols = keep.nonzero(as_tuple=True)
        if on_pairs is not None:
            on_pairs(torch.arange(2 * pairs, device=device) // 2)
        if on_head_pairs is not None and not chunked:
            on_head_pairs(rest_rows // 2)
        rest, _ = _forward(causal_lm, response_inputs, keep, chunked)
        rows.append(rest_rows)
        targets = ids[rest_rows, cols + 1]
        token_logps.append(
            _token_logps(causal_lm, rest, targets, chunk_tokens, rest_rows // 2, on_head_pairs)
        )
    interleaved = token_logps[0].new_zeros(2 * pairs).index_add(0, torch.cat(rows), torch.cat(token_logps))
    logps = torch.empty_like(interleaved).index_copy(0, order, interleaved)
    return logps, parts["response_lengths"].float()
