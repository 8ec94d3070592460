"""Prompt sharing (raco/losses/shared_prefix.py) against today's path (``response_logps`` on full rows):
log-probs, lengths and every trainable parameter's gradient of Σ_r w_r log π(row r).

Tolerances as tests/engine/test_chunked_logps.py: the prompt's keys/values and the responses' queries
are the same float32 numbers, but attention reduces over [prompt | response] in two blocks instead of one
row and the head's matmul runs on other blocks, so a token's log-prob moves by float32 ulps: rows to
rtol 1e-5 (atol 1e-4), gradients to rtol 1e-4 with atol 1e-5 times the gradient's largest entry."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import VOCAB, lora_model, make_batch, tiny_model
from model_zoo import FAMILIES, family_model, peft_model

from raco.gradients.engine import GradientEngine
from raco.losses import response_logps
from raco.losses.pairwise import ObjectiveSpec
from raco.losses.shared_prefix import SharedPrefixUnsupported, shared_prefix_logps, split_pairs
from raco.models.reference import AdapterReference, FrozenReference, compute_reference_table


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def _logps_and_grads(model, batch, weights, share, chunk_tokens=None):
    if share:
        logps, lengths = shared_prefix_logps(model, batch, chunk_tokens=chunk_tokens)
    else:
        logps, lengths = response_logps(model, batch, chunk_tokens=chunk_tokens)
    params = _trainable(model)
    grads = torch.autograd.grad((weights * logps).sum(), params, allow_unused=True)
    return (
        logps.detach(),
        lengths,
        [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)],
    )


def _assert_same(model, batch, seed=0, chunk_tokens=None):
    weights = torch.randn(batch["input_ids"].shape[0], generator=torch.Generator().manual_seed(seed))
    want, want_len, want_grads = _logps_and_grads(model, batch, weights, False, chunk_tokens)
    got, got_len, got_grads = _logps_and_grads(model, batch, weights, True, chunk_tokens)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert torch.equal(got_len, want_len)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max().clamp(min=1e-6)))


SHAREABLE = sorted(set(FAMILIES) - {"gemma3_text"})  # the zoo's Gemma-3 has a 4-token sliding window


@pytest.mark.parametrize("family", SHAREABLE)
def test_every_zoo_family_equals_todays_path(family):
    """Logits transformed by the forward (soft-capping, scaling), MoE, biases, every parameter's gradient."""
    _assert_same(family_model(family), make_batch(3, 1, seed=2))


@pytest.mark.parametrize("arch", ["llama", "qwen", "gpt2"])
def test_rotary_and_learned_positions(arch):
    """Positions continue from each prompt's length (GPT-2: learned absolute position embeddings)."""
    _assert_same(tiny_model(arch, seed=1), make_batch(4, 1, seed=3, max_len=14))


def test_smollm2_shaped_model():
    """SmolLM2-135M's shapes (hidden 576, 9 query / 3 key-value heads of 64, 49152 tokens, tied head,
    rope θ 1e5), 2 of its 30 layers; prompts of unequal lengths."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=2,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).float()
    batch = make_batch(2, 1, seed=4, max_len=16)
    batch["input_ids"] = batch["input_ids"] * 383 % 49152  # ids over the whole vocabulary
    _assert_same(model, batch)


def test_tiny_random_builtin_and_chunked_head():
    from raco.models.loading import tiny_random_model

    model = tiny_random_model(0, 49152)
    batch = make_batch(3, 1, seed=6)
    _assert_same(model, batch)
    _assert_same(model, batch, chunk_tokens=3)  # model.logprob_chunk together with sharing


@pytest.mark.parametrize("make", [lambda: lora_model("llama"), lambda: peft_model(family_model("qwen2"))])
def test_lora_gradients_flow_through_the_cache(make):
    _assert_same(make(), make_batch(3, 1, seed=7))


def test_left_padded_rows_give_the_right_padded_numbers():
    """Rows padded on the left: each row's prompt is its real tokens before the response."""
    model = tiny_model("llama", seed=2)
    batch = make_batch(3, 1, seed=8)
    with torch.no_grad():
        want, _ = response_logps(model, batch)
        left = {key: value.clone() for key, value in batch.items()}
        for r in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][r].sum())
            for key in ("input_ids", "attention_mask", "response_mask"):
                left[key][r] = torch.roll(batch[key][r], batch[key].shape[1] - n)
        got, lengths = shared_prefix_logps(model, left)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert torch.equal(lengths, batch["response_mask"].sum(1).float())


def test_prompt_runs_once_per_pair():
    """The decoder sees B prompts and 2B responses: P + |y¹| + |y²| token slots of each pair's widths."""
    batch = make_batch(3, 1, seed=9)
    parts = split_pairs(batch)
    assert parts["prompt_ids"].shape[0] == 3 and parts["response_ids"].shape[0] == 6
    seen = []
    model = tiny_model("llama")
    model.model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        shared_prefix_logps(model, batch)
    assert seen == [tuple(parts["prompt_ids"].shape), tuple(parts["response_ids"].shape)]


def test_refusals_name_the_model():
    batch = make_batch(2, 1, seed=1)
    with pytest.raises(
        SharedPrefixUnsupported, match=r"Gemma3ForCausalLM \(model type 'gemma3_text'\).*sliding"
    ):
        shared_prefix_logps(family_model("gemma3_text"), batch)
    model = tiny_model("llama")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    with pytest.raises(SharedPrefixUnsupported, match=r"LlamaForCausalLM.*gradient checkpointing"):
        shared_prefix_logps(model, batch)
    with torch.no_grad():  # without gradients the cache is kept: a reference forward may share
        shared_prefix_logps(model, batch)
    other = {key: value.clone() for key, value in batch.items()}
    other["input_ids"][2, 0] = other["input_ids"][0, 0] % (VOCAB - 1) + 1  # pair 0's y² row
    with pytest.raises(ValueError, match=r"same prompt"):
        shared_prefix_logps(tiny_model("llama"), other)


def test_references_share_the_prompt():
    """Frozen copy and adapter-disabled reference (and the cached table) give today's numbers."""
    batch = make_batch(3, 1, seed=10)
    model = tiny_model("llama", seed=3)
    want = FrozenReference(model).logps(batch)
    torch.testing.assert_close(
        FrozenReference(model, share_prompt=True).logps(batch), want, rtol=1e-5, atol=1e-4
    )
    table = compute_reference_table(FrozenReference(model, share_prompt=True), lambda: [batch], 3)
    torch.testing.assert_close(table, torch.stack(want.chunk(2), dim=1), rtol=1e-5, atol=1e-4)
    lora = lora_model("llama", seed=4)
    want = AdapterReference(lora).logps(batch)
    got = AdapterReference(lora, share_prompt=True).logps(batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("path", ["plain", "scalarized"])
def test_engine_paths_share_the_prompt(path):
    """The plain (k backward passes) and scalarized paths: the same losses and gradients."""
    specs = [ObjectiveSpec("a", "dpo", 0.1), ObjectiveSpec("b", "ipo", 0.5)]
    batch = make_batch(4, 2, seed=11, ties=False)
    ref = torch.randn(8, generator=torch.Generator().manual_seed(0)) - 20
    method = "weighted_sum" if path == "scalarized" else "raco"
    reports, grads = [], []
    for share in (False, True):
        model = tiny_model("llama", seed=5)
        engine = GradientEngine(model, specs, [0.3, 0.7], method=method, path=path, share_prompt=share)
        engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
        reports.append(engine.finish_step())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(reports[1].losses, reports[0].losses, rtol=1e-5, atol=1e-6)
    for g, w in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max().clamp(min=1e-6)))


def test_engine_refuses_checkpointing():
    """(The fused path takes the shared prompt: tests/engine/test_fused_shared_prefix.py.)"""
    specs = [ObjectiveSpec("a", "dpo", 0.1), ObjectiveSpec("b", "dpo", 0.2)]
    model = tiny_model("llama")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with pytest.raises(ValueError, match=r"share_prompt: not with model.gradient_checkpointing"):
        GradientEngine(model, specs, [0.5, 0.5], path="plain", share_prompt=True)


def test_the_trainer_passes_the_option_to_the_reference_and_the_engine():
    """``model.share_prompt`` reaches the frozen copy and the engine (training/session.py), on the plain
    path and on the default one (fused for k = 2)."""
    from types import SimpleNamespace

    from raco.config import load_config
    from raco.training.session import _engine, _load_model, objective_specs

    flags = {"data.train": "x", "model.share_prompt": "true", "objectives.a.loss": "dpo"}
    cfg = load_config(None, {**flags, "objectives.b.loss": "dpo", "method.path": "plain"})
    policy, reference = _load_model(cfg, [0] * 49152, "copy")  # anything with the tokenizer's len
    assert isinstance(reference, FrozenReference) and reference.share_prompt
    accelerator = SimpleNamespace(device=torch.device("cpu"))
    engine = _engine(cfg, policy, objective_specs(cfg), reference, accelerator)  # type: ignore[arg-type]
    assert engine.share_prompt and engine.path == "plain"
    cfg = load_config(None, {**flags, "objectives.b.loss": "dpo"})
    engine = _engine(cfg, policy, objective_specs(cfg), reference, accelerator)  # type: ignore[arg-type]
    assert engine.share_prompt and engine.path == "fused"
