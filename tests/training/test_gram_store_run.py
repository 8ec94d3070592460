"""``method.store: gram`` end to end (issue 13): a run keeping only the Gram matrix logs the numbers and
trains the weights of the same run keeping the k gradients (both solving per micro-batch, two
micro-batches per step), and what it cannot do is a ConfigError naming the method settings."""

from __future__ import annotations

import pytest
from run_compare import assert_same_run

from raco.config import ConfigError, from_dict
from raco.training.loop import train
from raco.training.session import setup


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
    lr = tree["train"]["lr"]
    assert_same_run(runs["gradients"].run_dir, runs["gram"].run_dir, steps=3, lr=lr)


def test_gram_store_needs_per_micro_batch_solving(tiny_config):
    with pytest.raises(ConfigError, match=r"store: gram.*solve_per 'microbatch'"):
        setup(from_dict(tiny_config(**{"method.store": "gram"})))
