"""Response log-probs in chunks of C tokens: no ``[tokens, V]`` logits are ever held.

For the N positions whose next token is a response token (``logit_positions``), with final hidden
state h_n (the decoder's output, final norm included), LM head W and target token y_n,

    z_n = φ(W h_n),      log π(y_n) = log softmax(z_n)[y_n] = z_n[y_n] − log Σ_v exp z_n[v],
    log π(y_r | x_r) = Σ_{n in row r} log π(y_n)

where φ is what the model's own forward does to its head's output (``head_transform``: Gemma-2/3's
final soft-capping c·tanh(z/c), Cohere's ``logit_scale``, Granite's division by ``logits_scaling``, ...).
The decoder runs once; then the N hidden states are taken C at a time: z for C tokens is formed in the
head's dtype, transformed, cast to float32, reduced to C numbers by log-softmax + gather, and freed.
Each chunk runs under non-reentrant activation checkpointing (``torch.utils.checkpoint``), so autograd
keeps only the chunk's input ``[C, h]`` and recomputes its logits in the backward pass: peak memory of
the head phase is O(C·V) in forward and backward (plus O(N·h) hidden states), against O(N·V) when the
logits of all N positions are formed at once.

Why this shape, after reading the two references the issue names: Liger-Kernel's fused linear
preference loss (src/liger_kernel/chunked_loss/fused_linear_preference.py) also projects chunks (of
pairs) of hidden states through the head weight, but differentiates each chunk's DPO loss inside the
forward (``torch.func.grad_and_value``) and accumulates the weight gradient there, which needs the
loss known up front and bypasses the head module; TRL's ``selective_log_softmax`` bounds memory by
taking log-softmax + gather (or gather − logsumexp) one row at a time, on logits that already exist.
Here the per-row loss weights come after the forward (the fused engine's u_{i,r}), so the backward
must stay autograd's; calling the head *module* keeps LoRA on the head and module hooks (the fused
capture) working.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from raco.data.packing import forward_inputs
from raco.losses.logps import Batch, HeadHook, kept_rows, logit_positions, unwrap_causal_lm

Transform = Callable[[Tensor], Tensor]


class ChunkedLogpsUnsupported(ValueError):
    """The model's logits cannot be reproduced exactly from its decoder and head module."""


@dataclass(frozen=True)
class HeadRule:
    """φ of one family: ``op`` ∈ {"softcap": c·tanh(z/c), "mul": z·s, "div": z/s} with c or s the config
    value ``option`` (None: the model skips it); ``float_first`` casts z to float32 before φ."""

    option: str
    op: str
    float_first: bool = False


def _rules(model_types: tuple[str, ...], rule: HeadRule) -> dict[str, HeadRule]:
    return dict.fromkeys(model_types, rule)


# What the ``*ForCausalLM.forward`` of transformers 5.24 does between the LM head and the returned
# logits, read from each of its 196 causal LMs; the model types not listed here return W h unchanged
# (or add only a ``.float()``/``.contiguous()``, which the float32 cast below covers).
HEAD_RULES: dict[str, HeadRule] = {
    **_rules(
        (
            "gemma2",
            "gemma3_text",
            "gemma3n_text",
            "gemma4_text",
            "gemma4_unified_text",
            "vaultgemma",
            "nanochat",
        ),
        HeadRule("final_logit_softcapping", "softcap"),
    ),
    "beam": HeadRule("final_logit_softcapping", "softcap", float_first=True),
    "recurrent_gemma": HeadRule("logits_soft_cap", "softcap"),
    **_rules(("cohere", "cohere2", "cohere2_moe", "cohere_compass_text"), HeadRule("logit_scale", "mul")),
    "hyperclovax": HeadRule("logits_scaling", "mul"),
    "falcon_h1": HeadRule("lm_head_multiplier", "mul"),
    **_rules(
        (
            "granite",
            "granite_swa",
            "granitemoe",
            "granitemoe_swa",
            "granitemoehybrid",
            "granitemoeshared",
        ),
        HeadRule("logits_scaling", "div"),
    ),
}

# Model types whose forward does more than φ(W h) on the decoder's output, and what: refused.
REFUSED: dict[str, str] = {
    "minicpm3": "divides the hidden states by 'logits_scaling' before its head",
    "inkling_text": "divides by 'logits_mup_width_multiplier' and cuts the padded vocabulary",
    "inkling2_text": "soft-caps its float32 logits with a module of its own ('final_logit_softcapping')",
    "inkling2_loop_text": "soft-caps its float32 logits with a module of its own ('final_logit_softcapping')",
    "xlstm": "soft-caps its logits in chunks at evaluation ('output_logit_soft_cap')",
    "modernbert-decoder": "applies a second 'decoder' projection after 'lm_head'",
    "musicgen": "has one head per codebook",
    "musicgen_melody": "has one head per codebook",
    "gemma4_assistant": "projects the hidden states with 'post_projection' / masked embeddings",
    "gemma4_unified_assistant": "projects the hidden states with 'post_projection' / masked embeddings",
}

# Config options that, in a model type not surveyed above, may change the logits (never a
# router's or attention's own soft-capping).
_SUSPECT = re.compile(r"^(final|output)_logits?_|^logits?_(soft|scal|mup)|^logit_scale|lm_head_multiplier")

# Attributes through which a causal LM's forward calls its LM head directly.
HEAD_NAMES = ("lm_head", "output_projection", "embed_out", "head", "output")


def _apply(rule: HeadRule, value: float) -> Transform:
    def transform(z: Tensor) -> Tensor:
        z = z.float() if rule.float_first else z
        if rule.op == "softcap":  # the order of Gemma-2's forward: divide, tanh, multiply
            return torch.tanh(z / value) * value
        return z * value if rule.op == "mul" else z / value

    return transform


def _identity(z: Tensor) -> Tensor:
    return z


def _flat_options(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Config options with nested configs (a multimodal model's ``text_config``) as dotted names."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flat_options(value, f"{prefix}{key}."))  # keys may be ints (id2label)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def head_transform(config: Any) -> Transform:
    """φ for this config's model type (see ``HEAD_RULES``); ``ChunkedLogpsUnsupported`` for a refused
    model type, or for an unsurveyed one whose config sets an option that may change the logits."""
    model_type = getattr(config, "model_type", "<unknown>")
    if model_type in REFUSED:
        raise ChunkedLogpsUnsupported(
            f"chunked log-probs cannot reproduce the logits of model type {model_type!r}: its forward "
            f"{REFUSED[model_type]}; use chunk_tokens=None"
        )
    rule = HEAD_RULES.get(model_type)
    if rule is None:
        options = _flat_options(config.to_dict() if hasattr(config, "to_dict") else vars(config))
        suspects = sorted(
            k for k, v in options.items() if _SUSPECT.search(k.rsplit(".", 1)[-1]) and v not in (None, False)
        )
        if suspects:
            raise ChunkedLogpsUnsupported(
                f"chunked log-probs do not know what model type {model_type!r} does with its config "
                f"option {suspects[0]!r} (it may transform the logits); use chunk_tokens=None"
            )
        return _identity
    value = getattr(config, rule.option, None)
    return _identity if value is None else _apply(rule, float(value))


def head_module(causal_lm: nn.Module) -> nn.Module:
    """The module the causal LM's forward applies to the decoder's output (its output embeddings)."""
    out = causal_lm.get_output_embeddings()
    for name in HEAD_NAMES:
        module = getattr(causal_lm, name, None)
        if isinstance(module, nn.Module):
            if module is out:
                return module
            break
    raise ChunkedLogpsUnsupported(
        f"{type(causal_lm).__name__} does not apply its output embeddings to the decoder's output "
        "directly (a prediction head with its own layers): use chunk_tokens=None"
    )


def final_hidden(causal_lm: nn.Module, batch: Batch) -> Tensor:
    """``[R, T, h]`` final hidden states of the decoder (``base_model_prefix``; final norm included);
    ``[1, N, h]`` for a packed batch (data/packing.py)."""
    prefix = getattr(causal_lm, "base_model_prefix", "")
    body = getattr(causal_lm, prefix, None) if prefix else None
    if not isinstance(body, nn.Module) or body is causal_lm:
        raise ChunkedLogpsUnsupported(f"{type(causal_lm).__name__} has no decoder module to run alone")
    out = body(**forward_inputs(batch))
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    if hidden.dim() != 3 or hidden.shape[:2] != batch["input_ids"].shape:
        raise ChunkedLogpsUnsupported(
            f"{type(body).__name__} returned hidden states of shape {tuple(hidden.shape)}"
        )
    return hidden


def chunk_token_logps(hidden: Tensor, targets: Tensor, head: nn.Module, transform: Transform) -> Tensor:
    """``[C]`` float32 log softmax(φ(W h_n))[y_n] for a chunk ``hidden [C, h]``, ``targets [C]``."""
    logits = transform(head(hidden)).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _is_fsdp_root(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def chunks_token_logps(
    causal_lm: nn.Module,
    hidden: Tensor,
    targets: Tensor,
    chunk_tokens: int,
    rows: Tensor,
    on_head_rows: HeadHook | None = None,
) -> Tensor:
    """``[N]`` float32 log softmax(z_n)[y_n] of final hidden states ``[N, h]``, C = ``chunk_tokens`` at
    a time: each chunk's ``rows`` given to ``on_head_rows`` before the head projects it, projected and
    reduced by ``chunk_token_logps`` (under non-reentrant checkpointing when gradients are on)."""
    head, transform = head_module(causal_lm), head_transform(causal_lm.config)
    pieces = []
    for start in range(0, hidden.shape[0], chunk_tokens):
        part = slice(start, start + chunk_tokens)
        if on_head_rows is not None:
            on_head_rows(rows[part])
        args = (hidden[part], targets[part], head, transform)
        if torch.is_grad_enabled():
            pieces.append(checkpoint(chunk_token_logps, *args, use_reentrant=False))
        else:
            pieces.append(chunk_token_logps(*args))
    return torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)


def chunked_response_logps(
    model: nn.Module, batch: Batch, chunk_tokens: int, on_head_rows: HeadHook | None = None
) -> tuple[Tensor, Tensor]:
    """``(logps [R], lengths [R])`` as ``response_logps``, forming logits for ``chunk_tokens`` positions
    at a time (module docstring). ``on_head_rows`` receives each chunk's ``[C]`` row index just before
    the head projects that chunk (never during the backward's recomputation)."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be ≥ 1, got {chunk_tokens}")
    causal_lm = unwrap_causal_lm(model)
    if _is_fsdp_root(causal_lm):
        raise ChunkedLogpsUnsupported(
            "chunked log-probs call the decoder and the head directly, around the FSDP2 root unit's "
            "hooks: use chunk_tokens=None with an FSDP2-sharded model"
        )
    keep = logit_positions(batch["response_mask"])
    rows, targets, lengths = kept_rows(batch, keep)  # a packed batch's rows from its row_ids
    hidden = final_hidden(causal_lm, batch)[keep]  # [N, h], row-major as the model's own logits
    token_logps = chunks_token_logps(causal_lm, hidden, targets, chunk_tokens, rows, on_head_rows)
    logps = token_logps.new_zeros(len(lengths)).index_add(0, rows, token_logps)
    return logps, lengths
