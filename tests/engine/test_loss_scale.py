"""Loss scaling (float16 mixed precision) leaves the engine's results unchanged: the backward seeds
are multiplied by S and the per-objective gradients divided by S as soon as they are formed."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import lora_model, make_batch, tiny_model

from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec

SPECS = [ObjectiveSpec("a", beta=0.3), ObjectiveSpec("b", beta=0.1)]


def _grads(model, path, scale, method="raco"):
    batch = make_batch(4, 2, seed=5)
    ref = torch.randn(batch["input_ids"].shape[0], generator=torch.Generator().manual_seed(2)) - 15
    engine = GradientEngine(model, SPECS, [0.7, 0.3], method=method, path=path, verify_fused=False)
    counts = engine.step_counts([batch])
    engine.accumulate(batch, counts=counts, ref_logps=ref, loss_scale=scale)
    report = engine.finish_step()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    for p in model.parameters():
        p.grad = None
    return report, grads


@pytest.mark.parametrize(
    "make,path,method",
    [
        (tiny_model, "fused", "raco"),
        (tiny_model, "plain", "raco"),
        (lora_model, "fused", "raco"),
        (tiny_model, "scalarized", "weighted_sum"),
    ],
)
def test_loss_scale_does_not_change_the_update(make, path, method):
    model = make()
    plain_report, plain = _grads(model, path, 1.0, method)
    scaled_report, scaled = _grads(model, path, 2.0**12, method)
    assert plain.keys() == scaled.keys() and plain
    for name in plain:
        torch.testing.assert_close(scaled[name], plain[name], rtol=1e-5, atol=1e-8, msg=name)
    torch.testing.assert_close(scaled_report.coefficients, plain_report.coefficients, rtol=1e-6, atol=1e-9)
    if plain_report.gram is not None:
        torch.testing.assert_close(scaled_report.gram, plain_report.gram, rtol=1e-5, atol=0.0)
