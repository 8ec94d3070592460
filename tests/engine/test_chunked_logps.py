"""Chunked log-probs (raco/losses/chunked.py) against today's path (``response_logps`` without chunks).

Tolerances: both paths compute the same float32 arithmetic, except that the LM head's matmul runs on
[C, h] instead of [N, h] blocks (BLAS may block the reduction over h differently) and the token sums
are added in another order. Each token's log-prob then differs by a few float32 ulps of the logits
(|z| ≲ 40 in the zoo: ~1e-5), and a row sums ≤ 10 tokens, so per-row sums are asserted to rtol 1e-5,
atol 1e-4 (as tests/engine/test_model_logits.py); gradients, sums of products of such numbers, to
rtol 1e-4 with atol 1e-5 times the gradient's largest entry."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from engine_fixtures import make_batch
from model_zoo import FAMILIES, family_model, peft_model

from raco.gradients.capture import FusedCapture
from raco.losses import response_logps
from raco.losses.chunked import ChunkedLogpsUnsupported, chunked_response_logps, head_transform
from raco.losses.logps import unwrap_causal_lm


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def _logps_and_grads(model, batch, weights, chunk_tokens):
    logps, lengths = response_logps(model, batch, chunk_tokens=chunk_tokens)
    params = _trainable(model)
    grads = torch.autograd.grad((weights * logps).sum(), params, allow_unused=True)
    return (
        logps.detach(),
        lengths,
        [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)],
    )


def _assert_same(model, batch, chunk_tokens, seed=0):
    weights = torch.randn(batch["input_ids"].shape[0], generator=torch.Generator().manual_seed(seed))
    want, want_len, want_grads = _logps_and_grads(model, batch, weights, None)
    got, got_len, got_grads = _logps_and_grads(model, batch, weights, chunk_tokens)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert torch.equal(got_len, want_len)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max().clamp(min=1e-6)))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_full_fine_tuning_equals_todays_path(family):
    """Every zoo family (soft-capped, scaled and plain heads), every parameter's gradient."""
    model = family_model(family)
    _assert_same(model, make_batch(3, 1, seed=2), chunk_tokens=4)


@pytest.mark.parametrize("chunk_tokens", [1, 7, 10_000])
def test_chunk_sizes(chunk_tokens):
    """One token per chunk, a chunk not dividing N, and one chunk holding every position."""
    _assert_same(family_model("gemma2"), make_batch(2, 1, seed=5), chunk_tokens)


@pytest.mark.parametrize("family", ["llama", "gemma2", "cohere"])
def test_tied_heads(family):
    _assert_same(family_model(family, tie=True), make_batch(3, 1, seed=3), chunk_tokens=5)


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "granite"])
def test_lora(family):
    model = peft_model(family_model(family))
    _assert_same(model, make_batch(3, 1, seed=4), chunk_tokens=3)


def test_lora_on_the_head():
    """peft wraps the head itself: the wrapper is what the chunks call (its LoRA factors get gradients)."""
    model = peft_model(family_model("gemma2"), target_modules=["q_proj", "lm_head"])
    assert any("lm_head" in n and p.requires_grad for n, p in model.named_parameters())
    _assert_same(model, make_batch(2, 1, seed=6), chunk_tokens=4)


def test_without_grad_equals_todays_path():
    model = family_model("granite").eval()
    batch = make_batch(3, 1, seed=7)
    with torch.no_grad():
        want, _ = response_logps(model, batch)
        got, _ = response_logps(model, batch, chunk_tokens=2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_no_token_by_vocabulary_tensor_is_kept_for_backward():
    """Outside the checkpointed chunks autograd saves no tensor with a vocabulary-sized dimension but
    parameters: the chunks' logits are recomputed in the backward, not kept."""
    model = family_model("gemma2")
    batch = make_batch(3, 1, seed=8)
    vocab = model.config.vocab_size
    params = {p.data_ptr() for p in model.parameters()}
    big: list[tuple[int, ...]] = []

    def pack(t):
        if vocab in t.shape and t.data_ptr() not in params:
            big.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        chunked_response_logps(model, batch, 2)[0].sum().backward()
    assert big == []
    big.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):  # the witness: today's path keeps them
        response_logps(model, batch)[0].sum()
    assert any(shape[-1] == vocab for shape in big)


def test_head_rows_are_given_per_chunk():
    model = family_model("llama")
    batch = make_batch(3, 1, seed=9)
    seen: list[torch.Tensor] = []
    chunked_response_logps(model, batch, 4, on_head_rows=seen.append)
    rows = batch["response_mask"][:, 1:].nonzero()[:, 0]
    assert all(len(r) <= 4 for r in seen)
    assert torch.equal(torch.cat(seen), rows)


def _fused_grads(model, batch, u, chunk_tokens):
    """The engine's fused recording (gradients/engine.py ``_fused``) over chunked log-probs."""
    causal_lm = unwrap_causal_lm(model)
    capture = FusedCapture(causal_lm, causal_lm.get_output_embeddings(), causal_lm.get_input_embeddings())
    with capture.recording(n_rows=batch["input_ids"].shape[0]):
        logps, _ = response_logps(model, batch, on_head_rows=capture.set_head_rows, chunk_tokens=chunk_tokens)
        capture.set_row_weights(u)
        logps.backward(torch.ones_like(logps))
    return capture.collect()


@pytest.mark.parametrize(
    ("family", "tie", "lora"), [("llama", False, False), ("gemma2", True, False), ("qwen3", False, True)]
)
def test_fused_capture_accumulates_head_gradients_per_chunk(family, tie, lora):
    """With each chunk's rows given to ``set_head_rows`` before the head runs, today's FusedCapture
    forms g_i = Σ_r u_ir ∇ log π(r) for every parameter — the head's too, added chunk by chunk."""
    model = family_model(family, tie=tie)
    model = peft_model(model) if lora else model
    batch = make_batch(3, 2, seed=10)
    u = torch.randn(2, batch["input_ids"].shape[0], generator=torch.Generator().manual_seed(1))
    fused = _fused_grads(model, batch, u, chunk_tokens=3)
    params = _trainable(model)
    logps, _ = response_logps(model, batch)
    for i in range(2):
        plain = torch.autograd.grad((u[i] * logps).sum(), params, retain_graph=True)
        for p, g in zip(params, plain, strict=True):
            torch.testing.assert_close(fused[id(p)][i], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()))


def test_transform_rules():
    cfg = SimpleNamespace
    z = torch.tensor([-50.0, 0.5, 50.0])
    soft = head_transform(cfg(model_type="gemma2", final_logit_softcapping=3.0))
    torch.testing.assert_close(soft(z), 3.0 * torch.tanh(z / 3.0))
    assert head_transform(cfg(model_type="gemma3_text", final_logit_softcapping=None))(z) is z
    torch.testing.assert_close(head_transform(cfg(model_type="granite", logits_scaling=4.0))(z), z / 4)
    torch.testing.assert_close(head_transform(cfg(model_type="hyperclovax", logits_scaling=4.0))(z), z * 4)
    torch.testing.assert_close(head_transform(cfg(model_type="cohere", logit_scale=0.25))(z), z / 4)
    assert head_transform(cfg(model_type="mpt", logit_scale=None))(z) is z  # MPT's forward ignores it
    assert (
        head_transform(cfg(model_type="gemma2", attn_logit_softcapping=50.0, final_logit_softcapping=None))(z)
        is z
    )


def test_refusals_name_the_model_type_and_option():
    cfg = SimpleNamespace
    with pytest.raises(ChunkedLogpsUnsupported, match=r"'minicpm3'.*logits_scaling"):
        head_transform(cfg(model_type="minicpm3", logits_scaling=2.0))
    with pytest.raises(ChunkedLogpsUnsupported, match=r"'newlm'.*'final_logit_softcapping'"):
        head_transform(cfg(model_type="newlm", final_logit_softcapping=30.0, output_router_logits=True))
    head_transform(cfg(model_type="newlm", id2label={0: "a"}, attn_logit_softcapping=5.0))
    nested = cfg(model_type="gemma3", text_config={"final_logit_softcapping": 30.0})  # multimodal wrapper
    with pytest.raises(ChunkedLogpsUnsupported, match=r"'text_config\.final_logit_softcapping'"):
        head_transform(nested)


def test_prediction_heads_and_bad_chunks_are_refused():
    from transformers import BertConfig, BertLMHeadModel

    bert = BertLMHeadModel(
        BertConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            is_decoder=True,
        )
    )
    batch = make_batch(1, 1, seed=11)
    batch = {**batch, "input_ids": batch["input_ids"] % 64}
    with pytest.raises(ChunkedLogpsUnsupported, match="BertLMHeadModel"):
        chunked_response_logps(bert, batch, 4)
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_response_logps(family_model("llama"), batch, 0)


@pytest.mark.parametrize("path", ["plain", "fused", "scalarized"])
def test_engine_paths_with_chunked_logps(path, monkeypatch):
    """The engine with ``chunk_tokens`` bound into its ``response_logps`` (what wiring the option will
    do) writes the same update as without: the plain path's k backward passes through the same
    checkpointed chunks (retain_graph), the fused path's head hooks fire once per chunk."""
    import functools

    import raco.gradients.engine as engine_module
    from raco.gradients import GradientEngine
    from raco.losses import ObjectiveSpec

    batch = make_batch(3, 3, seed=12)
    updates = []
    for chunk_tokens in (None, 3):
        model = family_model("gemma2")
        bound = functools.partial(engine_module.response_logps, chunk_tokens=chunk_tokens)
        monkeypatch.setattr(engine_module, "response_logps", bound)
        specs = [ObjectiveSpec(f"o{i}") for i in range(3)]
        method = "weighted_sum" if path == "scalarized" else "raco"
        options = None if path == "scalarized" else {"c": 0.4}
        engine = GradientEngine(
            model, specs, [0.2, 0.3, 0.5], method=method, method_options=options, path=path
        )
        engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=torch.zeros(6))
        report = engine.finish_step()
        updates.append(([p.grad.clone() for p in model.parameters()], report.coefficients))
        monkeypatch.undo()
    (want, a_want), (got, a_got) = updates
    torch.testing.assert_close(a_got, a_want, rtol=1e-4, atol=1e-6)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max().clamp(min=1e-6)))
