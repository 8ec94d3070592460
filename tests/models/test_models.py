"""Model loading: the built-in tiny model, LoRA, reference policies and the reference cache."""

from __future__ import annotations

import pytest
import torch

from raco.config import LoraConfig, ModelConfig
from raco.models.loading import disable_dropout, load_policy, tiny_random_model, trainable_parameters
from raco.models.reference import (
    CachedReference,
    cached_reference,
    frozen_copy,
    pairs_fingerprint,
    resolve_reference_kind,
    weights_fingerprint,
)


def test_tiny_random_is_seed_determined_with_a_real_tokenizer():
    model, tokenizer = load_policy(ModelConfig(name="tiny-random", seed=3), LoraConfig())
    again = tiny_random_model(3, len(tokenizer))
    other = tiny_random_model(4, len(tokenizer))
    assert weights_fingerprint(model) == weights_fingerprint(again) != weights_fingerprint(other)
    assert len(tokenizer) == 49152 and tokenizer.pad_token is not None and tokenizer.chat_template
    ids = tokenizer("Hello world", return_tensors="pt").input_ids
    assert model(ids).logits.shape == (1, ids.shape[1], 49152)


def test_lora_trains_only_adapters_and_checkpointing_keeps_gradients():
    lora = LoraConfig(enabled=True, r=4, target_modules=["q_proj", "v_proj"])
    model, tokenizer = load_policy(ModelConfig(name="tiny-random", gradient_checkpointing=True), lora)
    names = list(trainable_parameters(model))
    assert names and all("lora_" in n for n in names)
    ids = tokenizer("a b c d", return_tensors="pt").input_ids
    model.train()
    model(ids, labels=ids).loss.backward()
    assert all(p.grad is not None for p in trainable_parameters(model).values())


def test_trust_remote_code_is_off_by_default():
    assert ModelConfig().trust_remote_code is False


@pytest.mark.parametrize(
    ("kind", "lora", "needs", "expected"),
    [
        ("auto", True, True, "adapter"),
        ("auto", False, True, "copy"),
        ("cached", False, True, "cached"),
        ("auto", False, False, "none"),
        ("copy", True, False, "none"),
    ],
)
def test_reference_kind(kind, lora, needs, expected):
    assert resolve_reference_kind(kind, lora, needs) == expected


def test_reference_kind_errors():
    with pytest.raises(ValueError, match="reference-free"):
        resolve_reference_kind("none", False, True)
    with pytest.raises(ValueError, match="needs LoRA"):
        resolve_reference_kind("adapter", False, True)


def test_frozen_copy_is_independent():
    model = tiny_random_model(0, 100)
    reference = frozen_copy(model)
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)
    assert reference.kind == "copy" and not reference.model.training
    assert not any(p.requires_grad for p in reference.model.parameters())
    assert not torch.equal(reference.model.model.norm.weight, model.model.norm.weight)


def test_reference_cache_is_keyed_and_reused(tmp_path):
    table = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    calls = []

    def compute():
        calls.append(1)
        return table

    key = {
        "model": "m",
        "pairs": pairs_fingerprint(
            [{"row_index": 0, "prompt_ids": [1], "response_1_ids": [2], "response_2_ids": [3]}]
        ),
    }
    first = cached_reference(key, compute, root=tmp_path)
    second = cached_reference(key, compute, root=tmp_path)
    cached_reference({**key, "model": "other"}, compute, root=tmp_path)
    assert len(calls) == 2 and torch.equal(second.table, first.table)
    batch = {"row_index": torch.tensor([2, 0]), "input_ids": torch.zeros(4, 1)}
    assert CachedReference(table).logps(batch).tolist() == [4.0, 0.0, 5.0, 1.0]  # [y¹ rows, then y² rows]


def test_smollm2_loads_from_the_bundled_gguf():
    model, tokenizer = load_policy(ModelConfig(name="smollm2-135m-instruct"), LoraConfig())
    ids = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0])


def _dropout_model() -> torch.nn.Module:
    """A GPT-2 (nn.Dropout modules) with dropout 0.5 everywhere, in train mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.5
    return GPT2LMHeadModel(config).train()


def test_disable_dropout_makes_train_mode_forwards_deterministic():
    ids = torch.arange(16).unsqueeze(0)
    model = _dropout_model()
    assert not torch.equal(model(ids).logits, model(ids).logits)  # dropout is live
    assert disable_dropout(model) > 0
    torch.testing.assert_close(model(ids).logits, model(ids).logits, rtol=0, atol=0)
    llama = tiny_random_model(0, 64)
    for layer in llama.model.layers:
        layer.self_attn.attention_dropout = 0.3  # a float used by the attention kernel
    disable_dropout(llama)
    assert all(layer.self_attn.attention_dropout == 0.0 for layer in llama.model.layers)


def test_policy_keeps_lora_dropout_but_not_the_base_models():
    lora = LoraConfig(enabled=True, r=4, dropout=0.25, target_modules=["q_proj"])
    model, _ = load_policy(ModelConfig(name="tiny-random"), lora)
    rates = {type(m).__name__ + ":" + str(m.p) for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {"Dropout:0.25"}
    assert model.training and ModelConfig().disable_dropout is True  # TRL's default
