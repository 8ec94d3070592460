"""Tiny random causal LMs of many transformers families, and peft variants, for the fused/log-prob matrix.

Each family is built from its own config class with hidden 32 and 2 layers. The LM head weights are
scaled up so that logits reach the range where what a model's forward does to them (soft-capping,
scaling) changes log-probs by far more than rounding: a test that forgot it would fail."""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 128
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
MOE = dict(num_local_experts=4, num_experts_per_tok=2)
# model_type -> (config overrides, does its forward transform the LM head's output?)
FAMILIES: dict[str, tuple[dict, bool]] = {
    "llama": ({}, False),
    "qwen2": ({}, False),
    "qwen3": ({}, False),
    "mistral": ({}, False),
    "gemma": ({}, False),
    "olmo2": ({}, False),
    "phi3": ({}, False),
    "gpt_neox": ({}, False),
    "gemma2": ({"final_logit_softcapping": 3.0, "query_pre_attn_scalar": 8}, True),
    "gemma3_text": ({"final_logit_softcapping": 3.0, "query_pre_attn_scalar": 8, "sliding_window": 4}, True),
    "cohere": ({"logit_scale": 0.25}, True),
    "cohere2": ({"logit_scale": 0.25}, True),
    "granite": ({"logits_scaling": 4.0}, True),
    "granitemoe": ({"logits_scaling": 4.0, **MOE}, True),
    "hyperclovax": ({"logits_scaling": 3.0}, True),
    "mixtral": (MOE, False),
    "qwen3_moe": (
        {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "decoder_sparse_step": 1},
        False,
    ),
}
MOE_FAMILIES = ("mixtral", "qwen3_moe", "granitemoe")


def family_model(model_type: str, seed: int = 0, tie: bool = False) -> nn.Module:
    """A float32 2-layer random model of ``model_type`` with large logits and random norm weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    overrides, _ = FAMILIES[model_type]
    config = AutoConfig.for_model(model_type, **{**COMMON, **overrides, "tie_word_embeddings": tie})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).float()
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        if not tie:
            head.mul_(40.0)  # logits of order 10: soft-capping at 3 and scaling change log-probs a lot
        for name, p in model.named_parameters():
            if "norm" in name and p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model


def peft_model(base: nn.Module, seed: int = 0, **lora_kwargs) -> nn.Module:
    """peft LoRA with r = 4, every B (and embedding A) initialised non-zero so each factor has a gradient."""
    from peft import LoraConfig, get_peft_model

    lora_kwargs.setdefault("target_modules", ["q_proj", "v_proj"])
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, **lora_kwargs))
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and ("lora_B" in name or "lora_embedding" in name or "token" in name):
                p.normal_(0, 0.05)
    return model
