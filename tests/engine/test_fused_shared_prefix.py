"""The fused path with ``model.share_prompt`` (gradients/capture.py, "Shared prompt"): one backward through
the prompts' shared forward, seeded per row, gives every objective's gradient.

The reference is independent of both: ``response_logps`` on the full rows (no sharing, no hooks) and one
``autograd.grad`` per objective. Tolerances as tests/engine/test_shared_prefix.py: the shared forward
reduces attention over [prompt | response] in two blocks, so gradients agree to float32 rounding
(atol 2e-5 of each parameter's largest entry, as tests/engine/test_fused.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
from engine_fixtures import (
    assert_same_grads,
    lora_model,
    make_batch,
    per_objective_grads,
    raco_step,
    ref_logps,
    split_batch,
    tiny_model,
)

from raco.gradients import FusedPathUnsupported, GradientEngine
from raco.gradients.rows import pair_seeds
from raco.losses import ObjectiveSpec, response_logps

SPECS = [
    ObjectiveSpec("dpo", "dpo", beta=0.2),
    ObjectiveSpec("ipo", "ipo", beta=0.5),
    ObjectiveSpec("cdpo", "dpo", beta=0.1, label_smoothing=0.1),
]
NORMALISED = [ObjectiveSpec("simpo", "simpo", beta=2.0, gamma=0.3), ObjectiveSpec("amopo", "amopo", beta=1.0)]
MIXED = [ObjectiveSpec("dpo", "dpo", beta=0.2), ObjectiveSpec("simpo", "simpo", beta=2.0)]


def independent_grads(model, batch, specs, ref):
    """``{name: [k, *shape]}``: full rows (no sharing, no hooks), ``autograd.grad`` per objective."""
    return per_objective_grads(model, batch, specs, ref, response_logps)


def fused_shared_grads(model, batch, specs, ref, chunk=None, path="fused", verify=False):
    engine = GradientEngine(
        model,
        specs,
        torch.full((len(specs),), 1.0 / len(specs)),
        method="weighted_sum",
        path=path,
        share_prompt=True,
        verify_fused=verify,
        logprob_chunk=chunk,
    )
    engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
    names = {id(p): n for n, p in model.named_parameters()}
    store = {names[key]: g.clone() for key, g in engine._store.items()}
    return engine, store


CASES = {  # model, k, logprob_chunk, objectives
    "full-k2": (lambda: tiny_model("llama"), 2, None, SPECS),
    "full-k3": (lambda: tiny_model("llama", seed=1), 3, None, SPECS),
    "lora-k2": (lambda: lora_model("llama"), 2, None, SPECS),
    "lora-k3": (lambda: lora_model("qwen"), 3, None, SPECS),
    "tied-head-k3": (lambda: tiny_model("qwen", tie=True), 3, None, SPECS),
    "chunked-head-k3": (lambda: tiny_model("llama"), 3, 3, SPECS),
    "chunked-lora-k2": (lambda: lora_model("qwen", seed=2), 2, 4, SPECS),
    "length-normalised-k2": (lambda: tiny_model("llama"), 2, None, NORMALISED),
    # given position ids [rows, T], GPT-2's learned position embeddings map to rows (unshared: they
    # are broadcast over the batch, and the fused path falls back, tests/engine/test_fused.py)
    "gpt2-k2": (lambda: tiny_model("gpt2"), 2, None, SPECS),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_shared_prompt_equals_independent_per_objective_grads(case):
    """DPO, IPO, cDPO (s = (1, −1)) and SimPO + AMoPO (s = (1, −n¹/n²)); ties: pairs whose u is 0."""
    make, k, chunk, specs = CASES[case]
    batch = make_batch(4, k, seed=k + 1, ties=True)
    ref = ref_logps(8)
    want = independent_grads(make(), batch, specs[:k], ref)
    engine, got = fused_shared_grads(make(), batch, specs[:k], ref, chunk=chunk)
    assert engine.path == "fused" and engine.share_prompt
    assert_same_grads(got, want)


def test_verify_fused_passes_with_the_shared_prompt():
    """The first micro-batch is compared with the plain path (sharing too): it agrees, the engine keeps
    the fused path, and no warning is given."""
    batch = make_batch(4, 2, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        engine, got = fused_shared_grads(
            tiny_model("llama"), batch, SPECS[:2], ref_logps(8), path="auto", verify=True
        )
    assert engine.path == "fused" and not engine._verify
    assert_same_grads(got, independent_grads(tiny_model("llama"), batch, SPECS[:2], ref_logps(8)))


def test_pair_seeds():
    u = torch.tensor(
        [
            [0.5, 0.0, 0.0, -0.5, 0.0, 3.0],  # pair 0: (1, −1); pair 1: zero; pair 2: y² only
            [0.25, 0.0, 0.0, -0.25, 0.0, 1.5],
        ]
    )
    p, s, problem = pair_seeds(u, ["a", "b"])
    assert problem is None
    assert torch.equal(s, torch.tensor([1.0, 0.0, 0.0, -1.0, 0.0, 1.0]))
    torch.testing.assert_close(p[:, [0, 1, 2, 0, 1, 2]] * s, u, rtol=0, atol=0)
    mixed = u.clone()
    mixed[1, 3] = -0.3  # objective b weighs pair 0's y² otherwise
    _, _, problem = pair_seeds(mixed, ["a", "b"])
    assert problem is not None and "pair 0" in problem and "a: -1" in problem and "b: -1.2" in problem


def test_different_ratios_are_unsupported_and_auto_falls_back_to_the_plain_path():
    """DPO (ratio −1) beside SimPO (−n¹/n²) on responses of unequal lengths: one seeded backward cannot
    give them apart. ``fused`` raises; ``auto`` warns and gives exactly the plain path's numbers."""
    batch = make_batch(4, 2, seed=6, ties=False)
    assert not torch.equal(*batch["response_mask"].sum(1).chunk(2))
    ref = ref_logps(8)
    with pytest.raises(FusedPathUnsupported, match=r"share_prompt.*different ratios"):
        fused_shared_grads(tiny_model("llama"), batch, MIXED, ref)
    plain, want = fused_shared_grads(tiny_model("llama"), batch, MIXED, ref, path="plain")
    with pytest.warns(RuntimeWarning, match=r"does not support this model.*different ratios"):
        engine, got = fused_shared_grads(tiny_model("llama"), batch, MIXED, ref, path="auto", verify=True)
    assert engine.path == "plain"
    assert set(got) == set(want)
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(engine._losses, plain._losses, rtol=0, atol=0)


def _gram_run(make, batches, *, shared):
    """``store="gram"`` on the fused path with sharing, or the plain path's per-micro-batch solve without."""
    report, grads, _ = raco_step(
        make(),
        batches,
        SPECS,
        [0.5, 0.3, 0.2],
        store="gram" if shared else "gradients",
        path="fused" if shared else "plain",
        share_prompt=shared,
    )
    return report, grads


@pytest.mark.parametrize("micro_batches", [1, 2])
@pytest.mark.parametrize("arch", ["llama-full", "qwen-lora"])
def test_gram_store_with_the_shared_prompt(arch, micro_batches):
    """Both backward passes of ``store="gram"`` seeded per row: the plain path's ``.grad``, Gram matrix
    and coefficients (solve_per microbatch, the shared prompt's against full rows)."""
    make = (lambda: tiny_model("llama")) if arch == "llama-full" else (lambda: lora_model("qwen"))
    batches = split_batch(make_batch(4, 3, seed=5), 4 // micro_batches)
    want_report, want = _gram_run(make, batches, shared=False)
    report, got = _gram_run(make, batches, shared=True)
    assert_same_grads(got, want, floor=1e-8)
    torch.testing.assert_close(report.gram, want_report.gram, rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(report.coefficients, want_report.coefficients, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(report.losses, want_report.losses, rtol=1e-5, atol=0)


def test_checkpointing_is_still_refused():
    """transformers drops the cache inside checkpointed layers: refused at start on the fused path too."""
    model = tiny_model("llama")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with pytest.raises(ValueError, match=r"share_prompt: not with model.gradient_checkpointing"):
        GradientEngine(model, SPECS[:2], [0.5, 0.5], path="fused", share_prompt=True)
