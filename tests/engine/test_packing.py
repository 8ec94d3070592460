"""Padding-free (packed) batches (data/packing.py): the same rows concatenated into one sequence with
per-row position ids and ``row_ids``, no attention mask.

The independent reference is the padded batch through the model's own forward (``model(input_ids,
attention_mask).logits``, log-softmax, gather) and, for gradients, one ``autograd.grad`` per objective on
the padded rows without hooks. Packed log-probs, the plain path on packed rows and the fused capture
(rows from ``row_ids``) must give the same numbers: log-probs to rel 1e-5, gradients to 2e-5 of each
parameter's largest entry (tests/engine/test_fused.py's tolerance). And an attention implementation
that lets packed rows see each other is a ``ConfigError`` on the first packed micro-batch."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import (
    assert_same_grads,
    checkpointed,
    lora_model,
    make_batch,
    per_objective_grads,
    raco_step,
    ref_logps,
    split_batch,
    tiny_model,
)
from torch import nn

from raco.config_tree import ConfigError
from raco.data.packing import computed_tokens, forward_inputs, pack, packing_problem, real_tokens, unpack
from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec, response_logps
from raco.losses.logps import sequence_logps

SPECS = [
    ObjectiveSpec("dpo", "dpo", beta=0.2),
    ObjectiveSpec("ipo", "ipo", beta=0.5),
    ObjectiveSpec("simpo", "simpo", beta=2.0, gamma=0.3),
]


def padded_logps(model, batch):
    """The independent reference: the padded rows through the model's own forward, every logit."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sequence_logps(logits, batch["input_ids"], batch["response_mask"])


def test_pack_keeps_every_real_token_in_row_order_and_unpack_inverts_it():
    batch = make_batch(3, 2, seed=4)
    packed = pack(batch)
    real = batch["attention_mask"].bool()
    assert packed["input_ids"].shape == (1, int(real.sum())) and "attention_mask" not in packed
    lengths = real.sum(dim=1)
    assert torch.equal(packed["row_ids"], torch.repeat_interleave(torch.arange(6), lengths))
    assert torch.equal(packed["position_ids"][0], torch.cat([torch.arange(int(n)) for n in lengths]))
    assert int(packed["n_rows"]) == 6 and torch.equal(packed["signs"], batch["signs"])
    assert real_tokens(packed) == real_tokens(batch) == computed_tokens(packed) < computed_tokens(batch)
    assert "position_ids" in forward_inputs(packed) and "attention_mask" in forward_inputs(batch)
    again = unpack(packed)
    for key in ("input_ids", "attention_mask", "response_mask"):
        assert torch.equal(again[key], batch[key]), key


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("arch", ["llama", "qwen", "gpt2", "llama-eager"])
def test_packed_logps_equal_the_padded_rows_through_the_models_own_forward(arch, chunk):
    model = tiny_model(arch.split("-")[0])
    if arch.endswith("eager"):
        model.config._attn_implementation = "eager"
    batch = make_batch(4, 2, seed=2)
    with torch.no_grad():
        want, want_lengths = padded_logps(model, batch)
        got, lengths = response_logps(model, pack(batch), chunk_tokens=chunk)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(lengths, want_lengths)


def independent_grads(model, batch, specs, ref):
    """``{name: [k, *shape]}``: padded rows, the model's own forward, ``autograd.grad`` per objective."""
    return per_objective_grads(model, batch, specs, ref, padded_logps)


def engine_grads(model, batch, specs, ref, path, chunk=None, verify=False):
    engine = GradientEngine(
        model,
        specs,
        torch.full((len(specs),), 1.0 / len(specs)),
        method="weighted_sum",
        path=path,
        verify_fused=verify,
        logprob_chunk=chunk,
    )
    engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
    names = {id(p): n for n, p in model.named_parameters()}
    return engine, {names[key]: g.clone() for key, g in engine._store.items()}


CASES = {  # model, k, logprob_chunk
    "full-k2": (lambda: tiny_model("llama"), 2, None),
    "full-k3": (lambda: tiny_model("llama", seed=1), 3, None),
    "lora-k2": (lambda: lora_model("llama"), 2, None),
    "lora-k3": (lambda: lora_model("qwen"), 3, None),
    "tied-head-k3": (lambda: tiny_model("qwen", tie=True), 3, None),
    "chunked-head-k3": (lambda: tiny_model("llama"), 3, 3),
    "chunked-lora-k2": (lambda: lora_model("qwen", seed=2), 2, 4),
    # packed position ids map GPT-2's learned position embeddings to tokens, hence rows
    "gpt2-k2": (lambda: tiny_model("gpt2"), 2, None),
    "checkpointing-lora-k3": (lambda: checkpointed(lora_model("llama")), 3, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_and_plain_on_packed_rows_equal_the_padded_per_objective_grads(case):
    make, k, chunk = CASES[case]
    batch = make_batch(4, k, seed=k + 1)
    ref = ref_logps(8)
    want = independent_grads(make(), batch, SPECS[:k], ref)
    engine, fused = engine_grads(make(), pack(batch), SPECS[:k], ref, "fused", chunk)
    assert engine.path == "fused" and engine._packing_checked
    assert_same_grads(fused, want)
    _, plain = engine_grads(make(), pack(batch), SPECS[:k], ref, "plain", chunk)
    assert_same_grads(plain, want)


def test_verify_fused_passes_on_packed_rows():
    """``auto`` with the fused-vs-plain check of the first micro-batch: both packed, they agree."""
    batch = pack(make_batch(4, 2, seed=3))
    engine, _ = engine_grads(lora_model("llama"), batch, SPECS[:2], ref_logps(8), "auto", verify=True)
    assert engine.path == "fused" and not engine._verify


def gram_run(model, batches, *, store, path, chunk=None):
    report, grads, _ = raco_step(
        model, batches, SPECS, [0.5, 0.3, 0.2], store=store, path=path, logprob_chunk=chunk
    )
    return report, grads


@pytest.mark.parametrize("chunk", [None, 3])
def test_gram_store_on_packed_rows_equals_plain_padded(chunk):
    batches = split_batch(make_batch(4, 3, seed=5), 2)
    want_report, want = gram_run(tiny_model("llama"), batches, store="gradients", path="plain", chunk=chunk)
    packed = [pack(b) for b in batches]
    report, got = gram_run(tiny_model("llama"), packed, store="gram", path="fused", chunk=chunk)
    assert_same_grads(got, want, floor=1e-8)
    torch.testing.assert_close(report.gram, want_report.gram, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(report.coefficients, want_report.coefficients, rtol=1e-5, atol=1e-8)


def _mixing_attention(module, query, key, value, attention_mask, **kwargs):
    """sdpa with a plain causal mask over the whole sequence: packed rows attend to each other."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)


@pytest.fixture
def mixing_attention():
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register("row_mixing", _mixing_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register("row_mixing", sdpa_mask)
    return "row_mixing"


def test_an_attention_that_mixes_packed_rows_is_an_error_naming_it(mixing_attention):
    model = tiny_model("llama")
    model.config._attn_implementation = mixing_attention
    batch = make_batch(4, 2, seed=3)
    with torch.no_grad():  # padded, the attention's own causal mask over padding on the right is harmless
        torch.testing.assert_close(response_logps(model, batch)[0], padded_logps(model, batch)[0])
    engine = GradientEngine(model, SPECS[:2], [0.5, 0.5], method="weighted_sum", path="fused")
    named = r"data\.packing: model type 'llama' with model\.attn_implementation 'row_mixing'"
    with pytest.raises(ConfigError, match=named):
        engine.accumulate(pack(batch), counts=engine.step_counts([batch]), ref_logps=ref_logps(8))
    assert not engine._packing_checked
    assert all(p.grad is None for p in model.parameters())  # refused before anything was formed


def test_the_check_runs_in_float32_under_autocast(mixing_attention):
    """Mixed precision (float32 weights, bfloat16 autocast): the check leaves autocast and compares at
    float32's tolerance (1e-4), so mixing that moves a random model's log-probs by less than bfloat16's
    noise is still caught."""
    model = tiny_model("llama")
    model.config._attn_implementation = mixing_attention
    engine = GradientEngine(model, SPECS[:2], [0.5, 0.5], method="weighted_sum")
    batch = pack(make_batch(4, 2, seed=3))
    at_float32 = r"row_mixing.*> 0\.0001"
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(ConfigError, match=at_float32):
        engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref_logps(8))


def test_the_reference_is_checked_too(mixing_attention):
    """A policy that honours packed rows beside a reference (a frozen copy) that does not."""
    from raco.models.reference import frozen_copy

    model = tiny_model("llama")
    reference = frozen_copy(model)
    reference.model.config._attn_implementation = mixing_attention
    engine = GradientEngine(model, SPECS[:2], [0.5, 0.5], method="weighted_sum", reference=reference)
    batch = pack(make_batch(4, 2, seed=3))
    with pytest.raises(ConfigError, match=r"the reference's log-probs of a packed micro-batch differ"):
        engine.accumulate(batch, counts=engine.step_counts([batch]))


def test_packing_is_refused_with_a_shared_prompt_and_for_a_forward_without_position_ids():
    model = tiny_model("llama")
    engine = GradientEngine(model, SPECS[:2], [0.5, 0.5], method="weighted_sum", share_prompt=True)
    batch = pack(make_batch(2, 2))
    with pytest.raises(ConfigError, match="share_prompt"):
        engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref_logps(4))

    class NoPositions(nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return input_ids

    assert "position_ids" in (packing_problem(NoPositions()) or "")
    assert packing_problem(model) is None and packing_problem(model.model) is None


@pytest.mark.parametrize("kind", ["copy", "adapter", "cached"])
def test_every_reference_kind_gives_a_packed_batch_the_padded_numbers(kind):
    from raco.models.reference import AdapterReference, CachedReference, frozen_copy

    batch = make_batch(3, 2, seed=7)
    if kind == "copy":
        reference = frozen_copy(tiny_model("llama"))
    elif kind == "adapter":
        reference = AdapterReference(lora_model("llama"))
    else:
        reference = CachedReference(torch.randn(3, 2))
    torch.testing.assert_close(reference.logps(pack(batch)), reference.logps(batch), rtol=1e-5, atol=1e-5)
