"""float16 mixed precision: the dynamic loss-scale rule (torch GradScaler's), and a real run."""

from __future__ import annotations

import pytest
import torch

from raco.config import ConfigError, from_dict
from raco.training.loop import run
from raco.training.metrics import read_metrics
from raco.training.precision import DynamicLossScale
from raco.training.session import setup


def test_dynamic_rule_matches_torch_grad_scaler_defaults():
    reference = torch.amp.GradScaler("cpu")
    scale = DynamicLossScale(enabled=True)
    assert scale.value == reference.get_scale() == 2.0**16
    assert scale.growth_factor == reference.get_growth_factor()
    assert scale.backoff_factor == reference.get_backoff_factor()
    assert scale.growth_interval == reference.get_growth_interval()
    scale.overflow()
    assert scale.value == 2.0**15 and scale.good_steps == 0
    for _ in range(scale.growth_interval - 1):
        scale.success()
    assert scale.value == 2.0**15
    scale.success()
    assert scale.value == 2.0**16 and scale.good_steps == 0
    restored = DynamicLossScale()
    restored.load_state_dict(scale.state_dict())
    assert restored == scale
    assert DynamicLossScale(enabled=False).value == 1.0


def test_float16_run_keeps_float32_weights_and_recovers_from_overflow(tiny_config):
    """Seeding the backward with S = 2¹⁷ overflows float16 activation gradients (max 65504): those
    steps are skipped with S halved each time, without stopping the run (overflows are not counted
    as consecutive failures), and then training proceeds with finite float32 weights. (S = 2¹⁷, 2¹⁶ and
    2¹⁵ overflow here, so 5 steps give 3 skipped and 2 applied: float16 steps are slow on CPU.)"""
    steps_run = 5
    tree = tiny_config(
        **{"model.dtype": "float16", "train.max_steps": steps_run, "train.max_consecutive_skips": 1}
    )
    session = setup(from_dict(tree))
    assert all(p.dtype == torch.float32 for p in session.model.parameters())
    session.loss_scale.scale = 2.0**17
    run(session)
    steps = [r for r in read_metrics(session.run_dir) if "skipped" in r]
    assert len(steps) == steps_run and steps[0]["skipped"] == 1.0
    applied = [r for r in steps if r["skipped"] == 0.0]
    assert applied and applied[-1]["loss_scale"] < 2.0**17
    assert all(torch.isfinite(p).all() for p in session.model.parameters())


# --- bfloat16: mixed precision (float32 masters) learns at lr 7e-7; pure bfloat16 weights do not ---

LR = 7e-7  # Llama-3-8B's learning rate in the paper


def _one_step(tiny_config, **overrides):
    """A session after one optimizer step at lr 7e-7 (constant, no warm-up), and the initial weights."""
    tree = tiny_config(
        **{"train.lr": LR, "train.schedule": "constant", "train.max_steps": 1, "train.max_grad_norm": None},
        **overrides,
    )
    session = setup(from_dict(tree))
    before = {n: p.detach().clone() for n, p in session.model.named_parameters()}
    run(session)
    return session, before


def _half_ulp_bf16(w: torch.Tensor) -> torch.Tensor:
    """Half a bfloat16 ulp at each entry: |w| in [2^(E-1), 2^E) has ulp 2^(E-8) (8 significant bits)."""
    _, exponent = torch.frexp(w.float())
    return torch.ldexp(torch.ones_like(w, dtype=torch.float32), exponent - 9)


def test_bfloat16_mixed_precision_learns_at_lr_7e7_and_pure_bfloat16_does_not(tiny_config):
    """``model.dtype: bfloat16`` keeps float32 master weights: after one AdamW step at lr 7e-7 (whose
    first update is lr·g/(|g|+ε) ≈ ±lr per entry) almost every weight has moved by about lr. With
    ``model.pure_bf16`` the weights are bfloat16, and an entry can move only where lr exceeds half its
    bfloat16 ulp — |w| < 2⁻¹² for lr 7e-7 — about 1% of the tiny model's N(0, 0.02²) weights; the
    measured fraction is checked against that prediction, entry by entry, from the initial weights."""
    mixed, before = _one_step(tiny_config, **{"model.dtype": "bfloat16"})
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
    for state in mixed.optimizer.state.values():  # AdamW's moments are float32 too
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32
    moved = changed = total = 0
    for name, p in mixed.model.named_parameters():
        delta = (p.detach() - before[name]).abs()
        changed += int((delta > 0).sum())
        moved += int(((delta > 0.5 * LR) & (delta < 1.5 * LR)).sum())
        total += delta.numel()
    assert changed / total > 0.99, changed / total
    assert moved / total > 0.95, moved / total  # by about lr, as Adam's first step predicts

    pure, before = _one_step(
        tiny_config, **{"model.dtype": "bfloat16", "model.pure_bf16": True}, overwrite=True
    )
    assert all(p.dtype == torch.bfloat16 for p in pure.model.parameters())
    changed = predicted = total = 0
    for name, p in pure.model.named_parameters():
        w = before[name]
        changed += int((p.detach() != w).sum())
        predicted += int((_half_ulp_bf16(w) < LR).sum())
        total += w.numel()
    fraction, expected = changed / total, predicted / total
    assert 0.005 < expected < 0.02, expected  # ≈ P(|w| < 2⁻¹²) = 0.0097 for N(0, 0.02²)
    assert abs(fraction - expected) < 0.25 * expected, (fraction, expected)


def test_bfloat16_losses_match_float32_within_bfloat16_tolerance(tiny_config, tmp_path):
    """Three steps at the tiny config's lr (3e-3) from the same weights and data: every step's loss of
    the bfloat16 mixed-precision run is the float32 run's to bfloat16 accuracy (8 significant bits,
    relative 2⁻⁸ ≈ 4e-3 per operation; a loss accumulates a few such errors)."""
    losses = {}
    for dtype in ("float32", "bfloat16"):
        tree = tiny_config(**{"model.dtype": dtype, "train.max_steps": 3}, output_dir=str(tmp_path / dtype))
        session = setup(from_dict(tree))
        run(session)
        losses[dtype] = [r["loss"] for r in read_metrics(session.run_dir) if "skipped" in r]
    assert len(losses["float32"]) == 3
    for l32, l16 in zip(losses["float32"], losses["bfloat16"], strict=True):
        assert abs(l16 - l32) <= 2e-2 * abs(l32), losses


def test_pure_bf16_needs_bfloat16():
    tree = {"data": {"train": "x.jsonl"}, "model": {"dtype": "float16", "pure_bf16": True}}
    with pytest.raises(ConfigError, match=r"model\.pure_bf16: bfloat16 weights need model\.dtype: bfloat16"):
        from_dict(tree)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora-merged"])
def test_export_of_a_bfloat16_run_is_bfloat16(tiny_config, tmp_path, lora):
    """A bfloat16 run trains float32 masters (``model/`` keeps them); ``raco export`` writes the dtype
    the run asked for: bfloat16 safetensors, the trained weights rounded once."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from raco.export import export

    tree = tiny_config(**{"model.dtype": "bfloat16", "train.max_steps": 1, "lora.enabled": lora})
    session = setup(from_dict(tree))
    run(session)
    out = export(session.run_dir, tmp_path / "export", merge=True).output
    files = sorted(out.glob("*.safetensors"))
    assert files
    for file in files:
        with safe_open(str(file), "pt") as f:
            names = f.keys()  # a safetensors file is not iterable
            assert {f.get_slice(name).get_dtype() for name in names} == {"BF16"}
    exported = AutoModelForCausalLM.from_pretrained(str(out))
    assert exported.dtype == torch.bfloat16
    trained = session.accelerator.unwrap_model(session.model)
    if lora:
        trained = trained.merge_and_unload()
    expected = {n: p.detach().to(torch.bfloat16) for n, p in trained.state_dict().items()}
    for name, tensor in exported.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_pure_and_mixed_bfloat16_keep_separate_cached_reference_tables(tiny_config, tmp_path, monkeypatch):
    """Log-probs of bfloat16 weights are not reused for a run that holds float32 masters under autocast,
    nor the other way round (the cache key's weights fingerprint differs); the same run again reuses."""
    import raco.models.reference as reference
    from raco.training.loop import train

    monkeypatch.setattr(reference, "cache_dir", lambda: tmp_path / "cache")
    calls = []
    original = reference.compute_reference_table
    monkeypatch.setattr(reference, "compute_reference_table", lambda *a: calls.append(1) or original(*a))
    for n, pure in enumerate((False, True, False)):
        tree = {"train.max_steps": 1, "model.reference": "cached", "model.dtype": "bfloat16"}
        train(tiny_config(**tree, **{"model.pure_bf16": pure, "output_dir": str(tmp_path / f"r{n}")}))
    assert len(calls) == 4  # train + eval tables for mixed, again for pure, none for mixed again
