"""float16 mixed precision: the dynamic loss-scale rule (torch GradScaler's), and a real run."""

from __future__ import annotations

import torch

from raco.config import from_dict
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
