"""What the weights mean when objectives tie: ``normalize: batch`` (the paper's L_i = mean over all B
pairs, ties contributing 0) against ``normalize: labeled`` (mean over the N_i labelled pairs), checked
against the formulas written out here, through the engine, and in the configuration."""

from __future__ import annotations

import math

import pytest
import torch
from engine_fixtures import make_batch, tiny_model

from raco.aggregators import raco
from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec, PairLogps, loss_denominators, objective_losses

SPECS = [ObjectiveSpec("a", beta=0.2), ObjectiveSpec("b", beta=0.2)]


def _logsig(z: float) -> float:
    return -math.log1p(math.exp(-z))


def _tied_signs() -> torch.Tensor:
    """8 pairs; objective a labels all of them, objective b only 3 (5 ties)."""
    a = [1, -1, 1, 1, -1, 1, -1, 1]
    b = [1, 0, 0, -1, 0, 0, 1, 0]
    return torch.tensor([a, b], dtype=torch.float64).t()


def test_denominators_by_mode():
    signs = _tied_signs()
    micro = [signs[:3], signs[3:]]
    assert loss_denominators(micro, "batch").tolist() == [8.0, 8.0]
    assert loss_denominators(micro, "labeled").tolist() == [8.0, 3.0]
    with pytest.raises(ValueError, match="normalize must be one of"):
        loss_denominators(micro, "mean")


@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_losses_follow_the_formula_with_ties(normalize):
    g = torch.Generator().manual_seed(3)
    p1, p2, r1, r2 = (torch.randn(8, generator=g, dtype=torch.float64) for _ in range(4))
    pair = PairLogps(p1, p2, r1, r2, torch.ones(8), torch.ones(8))
    signs = _tied_signs()
    losses = objective_losses(pair, signs, SPECS, loss_denominators([signs], normalize))
    delta = ((p1 - p2) - (r1 - r2)).tolist()
    for i in range(2):
        s = signs[:, i].tolist()
        total = sum(-_logsig(0.2 * si * d) for si, d in zip(s, delta, strict=True) if si != 0)
        n = 8 if normalize == "batch" else sum(1 for si in s if si != 0)
        assert losses[i].item() == pytest.approx(total / n, rel=1e-12)


def _engine_step(normalize: str, batch, ref):
    model = tiny_model("llama")
    engine = GradientEngine(
        model, SPECS, [0.5, 0.5], method="raco", method_options={"c": 0.4}, normalize=normalize
    )
    engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
    names = {id(p): n for n, p in model.named_parameters()}
    store = {names[key]: g.clone() for key, g in engine._store.items()}
    return engine.finish_step(), store


def test_batch_scales_each_gradient_by_its_label_share_and_changes_the_aggregation():
    """g_i(batch) = (N_i / B)·g_i(labeled); the aggregation then sees the paper's gradients."""
    batch = make_batch(8, 2, seed=0, ties=False)
    batch["signs"] = _tied_signs().float()
    ref = torch.randn(16, generator=torch.Generator().manual_seed(4)) - 20
    by_batch, g_batch = _engine_step("batch", batch, ref)
    by_label, g_label = _engine_step("labeled", batch, ref)
    share = torch.tensor([8 / 8, 3 / 8])
    for key, g in g_label.items():
        torch.testing.assert_close(
            g_batch[key], share.reshape(2, *[1] * (g.dim() - 1)) * g, rtol=1e-4, atol=1e-7
        )
    scale = share.double()
    torch.testing.assert_close(
        by_batch.gram, by_label.gram * torch.outer(scale, scale), rtol=1e-5, atol=1e-12
    )
    weights = torch.tensor([0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(by_batch.coefficients, raco(by_batch.gram, weights, c=0.4).coefficients)
    assert not torch.allclose(by_batch.coefficients, by_label.coefficients, rtol=1e-3)
    torch.testing.assert_close(by_batch.losses, by_label.losses * scale, rtol=1e-6, atol=1e-12)


def test_config_option_reaches_the_engine_choices():
    from raco.config import ConfigError, MethodConfig, from_dict

    assert MethodConfig().normalize == "batch"
    tree = {"model": {"name": "tiny-random"}, "method": {"normalize": "labeled"}}
    with pytest.raises(ConfigError, match="normalize"):
        from_dict({**tree, "method": {"normalize": "mean"}})
    with pytest.raises(ValueError, match="normalize must be one of"):
        GradientEngine(tiny_model("llama"), SPECS, [0.5, 0.5], normalize="mean")
