"""``model.share_prompt`` on the default path (fused for k = 2, gradients/capture.py "Shared prompt"): a
run sharing each pair's prompt logs the numbers of the same run without sharing, and stays fused."""

from __future__ import annotations

import warnings

import pytest

from raco.training.loop import train
from raco.training.metrics import read_metrics

COMPARED = (
    "loss",
    "friendly/loss",
    "concise/loss",
    "friendly/coef",
    "concise/coef",
    "grad_norm",
    "pareto_measure",
)


def test_shared_prompt_run_equals_the_unshared_run_on_the_fused_path(tiny_config):
    runs = {}
    for share in (False, True):
        tree = tiny_config(**{"model.share_prompt": share, "train.max_steps": 3})
        tree["output_dir"] += f"-share-{share}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs[share] = train(tree)
        assert not [w for w in caught if "fused one-backward path does not support" in str(w.message)]
    logs = {
        share: [r for r in read_metrics(result.run_dir) if "friendly/loss" in r]
        for share, result in runs.items()
    }
    assert [r["step"] for r in logs[True]] == [1, 2, 3]
    for want, got in zip(logs[False], logs[True], strict=True):
        for key in COMPARED:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), (got["step"], key)
