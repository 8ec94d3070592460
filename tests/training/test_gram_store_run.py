"""``method.store: gram`` end to end (issue 13): a run keeping only the Gram matrix logs the numbers and
trains the weights of the same run keeping the k gradients (both solving per micro-batch, two
micro-batches per step), and what it cannot do is a ConfigError naming the method settings."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from raco.config import ConfigError, from_dict
from raco.training.checkpoint import latest_checkpoint
from raco.training.loop import train
from raco.training.metrics import read_metrics
from raco.training.session import setup

LR = 3e-3  # tiny_tree's train.lr
COMPARED = (
    "loss",
    "friendly/loss",
    "concise/loss",
    "friendly/coef",
    "concise/coef",
    "grad_norm",
    "pareto_measure",
)


def test_gram_store_run_equals_the_gradient_store_run(tiny_config):
    runs = {}
    for store in ("gradients", "gram"):
        tree = tiny_config(
            **{
                "method.store": store,
                "method.solve_per": "microbatch",
                "train.grad_accum": 2,
                "train.max_steps": 3,
            }
        )
        tree["output_dir"] += f"-{store}"
        runs[store] = train(tree)
    logs = {
        store: [r for r in read_metrics(result.run_dir) if "friendly/loss" in r]
        for store, result in runs.items()
    }
    assert [r["step"] for r in logs["gram"]] == [1, 2, 3]
    for want, got in zip(logs["gradients"], logs["gram"], strict=True):
        for key in COMPARED:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), (got["step"], key)
    weights = {
        store: load_file(str(latest_checkpoint(result.run_dir) / "trainable.safetensors"))
        for store, result in runs.items()
    }
    for name, tensor in weights["gradients"].items():
        # Adam's first steps are ±lr per entry whatever the gradient's size, so entries whose gradient
        # is near zero carry the two paths' float32 rounding up to a fraction of a step: 1 % of lr
        torch.testing.assert_close(weights["gram"][name], tensor, rtol=0, atol=0.01 * LR, msg=name)


def test_gram_store_needs_per_micro_batch_solving(tiny_config):
    with pytest.raises(ConfigError, match=r"store: gram.*solve_per 'microbatch'"):
        setup(from_dict(tiny_config(**{"method.store": "gram"})))
