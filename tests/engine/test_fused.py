"""The fused one-backward path equals the plain k-backward path (float32 tolerance), and the Gram
matrix, the aggregation and the written ``.grad`` are what the definitions say."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import lora_model, make_batch, tiny_model

from raco.aggregators import AGGREGATORS
from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec

OBJECTIVES = [
    ObjectiveSpec("quality", loss="dpo", beta=0.2, label_smoothing=0.05),
    ObjectiveSpec("brevity", loss="hinge", beta=0.05),
    ObjectiveSpec("safety", loss="simpo", beta=1.0, gamma=0.2),
]
MODELS = {
    "llama-full": lambda: tiny_model("llama"),
    "qwen-full-tied": lambda: tiny_model("qwen", tie=True),
    "llama-lora": lambda: lora_model("llama"),
    "qwen-lora": lambda: lora_model("qwen"),
}


def per_objective_grads(model, k, path, batch, ref):
    engine = GradientEngine(
        model, OBJECTIVES[:k], torch.full((k,), 1.0 / k), method="weighted_sum", path=path, verify_fused=False
    )
    engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
    store = {key: g.clone() for key, g in engine._store.items()}
    engine.finish_step()
    return store


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fused_equals_plain(name, k):
    model = MODELS[name]()
    batch = make_batch(4, k, seed=k, ties=True)  # ties, unequal lengths, right padding
    ref = torch.randn(8, generator=torch.Generator().manual_seed(5)) - 20
    plain = per_objective_grads(model, k, "plain", batch, ref)
    fused = per_objective_grads(model, k, "fused", batch, ref)
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    assert set(plain) == set(fused) == set(trainable)
    for key, g in plain.items():
        assert fused[key].shape == g.shape == (k, *g.shape[1:]), trainable[key]
        scale = g.abs().max().clamp(min=1e-6)
        torch.testing.assert_close(fused[key] / scale, g / scale, rtol=0, atol=2e-5, msg=trainable[key])


def test_gram_aggregation_and_grad_match_definitions():
    model = lora_model("llama")
    batch = make_batch(4, 3, seed=7, ties=False)
    ref = torch.randn(8, generator=torch.Generator().manual_seed(1)) - 20
    engine = GradientEngine(
        model, OBJECTIVES, [0.5, 0.3, 0.2], method="raco", method_options={"c": 0.4}, verify_fused=False
    )
    engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
    per_param = dict(engine._store)
    report = engine.finish_step()
    flat = torch.cat([per_param[id(p)].reshape(3, -1) for p in engine.params], dim=1).double()
    torch.testing.assert_close(report.gram, flat @ flat.t())
    expected = AGGREGATORS["raco"](report.gram, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), c=0.4)
    torch.testing.assert_close(report.coefficients, expected.coefficients)
    for p in engine.params:
        want = (expected.coefficients.float().reshape(3, *[1] * p.dim()) * per_param[id(p)]).sum(0)
        torch.testing.assert_close(p.grad, want)
    assert report.pareto_measure is not None and report.pareto_measure >= 0
    assert report.grad_norms.shape == (3,) and report.cosines[0, 0] == pytest.approx(1.0)


def test_scalarized_path_equals_weighted_sum_of_fused():
    batch = make_batch(4, 2, seed=3)
    ref = torch.randn(8, generator=torch.Generator().manual_seed(2)) - 20
    grads = {}
    for path in ("fused", "scalarized"):
        model = tiny_model("llama")
        engine = GradientEngine(
            model, OBJECTIVES[:2], [0.7, 0.3], method="weighted_sum", path=path, verify_fused=False
        )
        engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
        engine.finish_step()
        grads[path] = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(grads["fused"], grads["scalarized"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_peft_reference_is_the_base_model():
    """AdapterReference gives the base model's log-probs (the model's own forward with adapters off,
    summed by the written-out formula), and the engine's losses use them."""
    from raco.losses import sequence_logps
    from raco.models.reference import AdapterReference

    model = lora_model("llama")
    with torch.no_grad():  # non-zero adapters, so that policy and base differ
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    batch = make_batch(2, 1, seed=0, ties=False)
    with torch.no_grad(), model.disable_adapter():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    base = sequence_logps(logits, batch["input_ids"], batch["response_mask"])[0]
    reference = AdapterReference(model)
    torch.testing.assert_close(reference.logps(batch), base)
    losses = {}
    for name, kwargs in (("own", {}), ("given", {"ref_logps": base})):
        engine = GradientEngine(
            model, OBJECTIVES[:1], [1.0], method="weighted_sum", reference=reference, path="plain"
        )
        losses[name] = engine.accumulate(batch, counts=engine.step_counts([batch]), **kwargs)
        engine.discard_step()
    assert torch.equal(losses["own"].losses, losses["given"].losses)
    assert torch.equal(losses["own"].reward_sums, losses["given"].reward_sums)


def test_reference_based_loss_without_reference_is_an_error():
    engine = GradientEngine(tiny_model("llama"), OBJECTIVES[:1], [1.0], method="weighted_sum")
    batch = make_batch(2, 1, seed=0, ties=False)
    with pytest.raises(ValueError, match="needs reference log-probs"):
        engine.accumulate(batch, counts=engine.step_counts([batch]))


def test_unsupported_model_falls_back_to_plain_under_auto():
    """The fused path cannot split GPT-2's shared position embeddings per row: `auto` warns and
    gives exactly the plain path's gradients; an explicit `fused` is a clear error."""
    from raco.gradients import FusedPathUnsupported

    batch = make_batch(4, 2, seed=2, ties=True)
    ref = torch.randn(8, generator=torch.Generator().manual_seed(5)) - 20
    plain = per_objective_grads(tiny_model("gpt2"), 2, "plain", batch, ref)
    with pytest.warns(RuntimeWarning, match="fused one-backward path does not support this model"):
        auto = per_objective_grads(tiny_model("gpt2"), 2, "auto", batch, ref)
    assert plain and len(plain) == len(auto)  # same parameter order: compare in order
    for g, h in zip(plain.values(), auto.values(), strict=True):
        torch.testing.assert_close(h, g, rtol=0, atol=0)
    with pytest.raises(FusedPathUnsupported, match="position embeddings"):
        per_objective_grads(tiny_model("gpt2"), 2, "fused", batch, ref)
