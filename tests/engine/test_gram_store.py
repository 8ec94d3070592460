"""``store="gram"`` (issue 13): no per-objective gradients kept — the Gram matrix is summed from the
fused hooks as each parameter's gradient is complete, the dual is solved, and a second backward of
Σ a_i L_i writes the update. Checked against the plain path (k ``autograd.grad`` calls, no hooks) with
per-micro-batch solving, the semantics ``store="gram"`` has: the same ``.grad``, Gram matrix and
coefficients — on full fine-tuning, LoRA, a tied embedding/head (two taps per parameter), chunked
log-probs (one head tap per chunk), checkpointing and gradient accumulation."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import (
    assert_same_grads,
    checkpointed,
    lora_model,
    make_batch,
    raco_step,
    split_batch,
    tiny_model,
)

from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec

SPECS = [ObjectiveSpec("a", beta=0.2), ObjectiveSpec("b", loss="ipo", beta=2.0), ObjectiveSpec("c")]
W = [0.5, 0.3, 0.2]


def run(model, batches, *, store, path, chunk=None):
    report, grads, engine = raco_step(model, batches, SPECS, W, store=store, path=path, logprob_chunk=chunk)
    return report, grads, engine.peak_store_bytes


CASES = {
    "full": (lambda: tiny_model("llama"), 1, None),
    "lora": (lambda: lora_model("llama"), 1, None),
    "tied": (lambda: tiny_model("qwen", tie=True), 1, None),
    "chunked-head": (lambda: tiny_model("llama"), 1, 3),
    "checkpointing": (lambda: checkpointed(tiny_model("llama")), 1, None),
    "two-micro-batches": (lambda: tiny_model("llama"), 2, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gram_store_equals_plain_per_micro_batch(case):
    make, micro_batches, chunk = CASES[case]
    batch = make_batch(4, 3, seed=5)
    batches = split_batch(batch, 4 // micro_batches)
    want_report, want, _ = run(make(), batches, store="gradients", path="plain", chunk=chunk)
    report, got, peak = run(make(), batches, store="gram", path="fused", chunk=chunk)
    assert peak == 0  # nothing [k, *shape] was ever held
    assert_same_grads(got, want, floor=1e-8)
    torch.testing.assert_close(report.gram, want_report.gram, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(report.coefficients, want_report.coefficients, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(report.losses, want_report.losses, rtol=1e-6, atol=0)


def test_gram_store_keeps_less_than_the_gradients():
    batch = make_batch(4, 3, seed=5)
    _, _, kept = run(tiny_model("llama"), [batch], store="gradients", path="fused")
    n = sum(p.numel() for p in tiny_model("llama").parameters())
    assert kept == 3 * 4 * n  # k float32 gradients of every parameter: what "gram" avoids


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"store": "gram", "solve_per": "step"}, "solve_per 'microbatch'"),
        ({"store": "gram", "path": "plain", "solve_per": "microbatch"}, "fused"),
        ({"store": "gram", "path": "scalarized", "solve_per": "microbatch"}, "fused"),
        ({"store": "everything"}, "store must be"),
    ],
)
def test_gram_store_refuses_what_it_cannot_do(options, message):
    with pytest.raises(ValueError, match=message):
        GradientEngine(
            tiny_model("llama"),
            SPECS,
            W,
            method="raco" if options.get("path") != "scalarized" else "weighted_sum",
            **options,
        )
