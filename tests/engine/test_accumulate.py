"""Gradient accumulation (4 micro-batches of 2 pairs = 1 batch of 8), per-micro-batch solving,
absent objectives, and gradient checkpointing on both paths."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import lora_model, make_batch, split_batch, tiny_model

from raco.aggregators import AGGREGATORS
from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec

SPECS = [ObjectiveSpec("a", beta=0.2), ObjectiveSpec("b", loss="ipo", beta=2.0)]
W = [0.6, 0.4]


def _step(model, batches, ref, path="fused", solve_per="step", method="raco", normalize="batch"):
    engine = GradientEngine(
        model,
        SPECS,
        W,
        method=method,
        method_options={"c": 0.4} if method == "raco" else {},
        path=path,
        solve_per=solve_per,
        verify_fused=False,  # the fused path's own numbers are under test
        normalize=normalize,
    )
    counts = engine.step_counts(batches)
    start = 0
    for mb in batches:
        n = mb["input_ids"].shape[0]
        engine.accumulate(mb, counts=counts, ref_logps=ref[start : start + n])
        start += n
    report = engine.finish_step()
    return report, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _ref_for(batches):
    g = torch.Generator().manual_seed(11)
    return torch.cat([torch.randn(mb["input_ids"].shape[0], generator=g) - 20 for mb in batches])


def _interleave_ref(batch, micro):
    """Reference log-probs of the full batch in the micro-batches' row order."""
    n = batch["signs"].shape[0]
    ref = torch.randn(2 * n, generator=torch.Generator().manual_seed(3)) - 20
    parts = []
    for start in range(0, n, micro):
        idx = list(range(start, start + micro))
        parts.append(ref[idx + [n + i for i in idx]])
    return ref, torch.cat(parts)


@pytest.mark.parametrize("normalize", ["batch", "labeled"])
@pytest.mark.parametrize("path", ["fused", "plain"])
def test_four_micro_batches_equal_one_batch(path, normalize):
    batch = make_batch(8, 2, seed=4)  # ties: the micro-batches hold different numbers of labelled pairs
    assert len({tuple((mb["signs"] != 0).sum(0).tolist()) for mb in split_batch(batch, 2)}) > 1
    ref_full, ref_micro = _interleave_ref(batch, 2)
    report_1, grads_1 = _step(tiny_model("llama"), [batch], ref_full, path=path, normalize=normalize)
    report_4, grads_4 = _step(
        tiny_model("llama"), split_batch(batch, 2), ref_micro, path=path, normalize=normalize
    )
    torch.testing.assert_close(report_4.gram, report_1.gram, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(report_4.coefficients, report_1.coefficients, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(report_4.losses, report_1.losses, rtol=1e-5, atol=1e-7)
    for name, g in grads_1.items():
        torch.testing.assert_close(grads_4[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_solve_per_microbatch_sums_micro_directions():
    batch = make_batch(4, 2, seed=6, ties=False)
    micro = split_batch(batch, 2)
    _, ref = _interleave_ref(batch, 2)
    _, grads = _step(lora_model("llama"), micro, ref, solve_per="microbatch")
    # by hand: per micro-batch Gram → raco coefficients → direction; sum over micro-batches
    model = lora_model("llama")
    engine = GradientEngine(model, SPECS, W, method="weighted_sum")
    counts = engine.step_counts(micro)
    want: dict[str, torch.Tensor] = {}
    for i, mb in enumerate(micro):
        engine.accumulate(mb, counts=counts, ref_logps=ref[4 * i : 4 * i + 4])
        gram = engine.finish_step().gram
        a = AGGREGATORS["raco"](gram, torch.tensor(W, dtype=torch.float64), c=0.4).coefficients
        # finish_step wrote (w-weighted) grads; recover per-objective grads via a second engine pass
        engine2 = GradientEngine(model, SPECS, W, method="weighted_sum")
        engine2.accumulate(mb, counts=counts, ref_logps=ref[4 * i : 4 * i + 4])
        names = {id(p): n for n, p in model.named_parameters()}
        for key, g in engine2._store.items():
            d = (a.float().reshape(2, *[1] * (g.dim() - 1)) * g).sum(0)
            want[names[key]] = want.get(names[key], 0) + d
        engine2.finish_step()
    for name, g in want.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-7, msg=name)


def test_objective_absent_from_step_has_zero_gradient():
    batch = make_batch(4, 2, seed=1)
    batch["signs"][:, 1] = 0
    engine = GradientEngine(tiny_model("llama"), SPECS, W, method="weighted_sum")
    engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=_ref_for([batch]))
    report = engine.finish_step()
    assert report.losses[1] == 0 and report.grad_norms[1] == 0 and report.grad_norms[0] > 0


@pytest.mark.parametrize("path", ["fused", "plain"])
@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_non_reentrant(path, lora):
    batch = make_batch(4, 2, seed=8)
    ref = _ref_for([batch])
    make = (lambda: lora_model("llama")) if lora else (lambda: tiny_model("llama"))
    _, want = _step(make(), [batch], ref, path="plain")
    model = make()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    _, got = _step(model, [batch], ref, path=path)
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("solve_per", ["step", "microbatch"])
def test_non_finite_gradients_discard_the_step(solve_per):
    """A NaN weight makes every gradient NaN: finish_step (or the micro-batch solve) raises
    NonFiniteGradientError, writes no .grad, and the engine starts the next step clean."""
    from raco.gradients import NonFiniteGradientError

    model = tiny_model()
    batch = make_batch(4, 2, seed=3)
    ref = _ref_for([batch])
    engine = GradientEngine(model, SPECS, W, method_options={"c": 0.4}, path="fused", solve_per=solve_per)
    counts = engine.step_counts([batch])
    saved = model.model.norm.weight.detach().clone()
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteGradientError, match="NaN or inf"):
        engine.accumulate(batch, counts=counts, ref_logps=ref)
        engine.finish_step()
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        model.model.norm.weight.copy_(saved)
    engine.discard_step()
    engine.accumulate(batch, counts=counts, ref_logps=ref)
    report = engine.finish_step()
    assert torch.isfinite(report.gram).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
