"""Two runs of the toy problem that must agree: the step metrics they log and the weights they train.

Used where a run through one code path (store: gram, shared prompts, packed batches) is checked
against the same run through the plain one. Metrics agree to float32 rounding (rel 1e-5); trained
weights to 1 % of the learning rate, because Adam's first steps are ±lr per entry whatever the
gradient's size, so entries whose gradient is near zero carry the two paths' rounding up to a fraction
of a step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from raco.training.checkpoint import latest_checkpoint
from raco.training.metrics import read_metrics

#: what every step of the toy run logs and both runs must agree on (toy_data.tiny_tree's objectives)
STEP_METRICS = (
    "loss",
    "friendly/loss",
    "concise/loss",
    "friendly/coef",
    "concise/coef",
    "grad_norm",
    "pareto_measure",
)


def step_lines(run_dir: Path) -> list[dict]:
    """The run's per-step metric lines (those carrying the objectives' losses)."""
    return [r for r in read_metrics(run_dir) if "friendly/loss" in r]


def assert_same_run(
    want_dir: Path,
    got_dir: Path,
    *,
    steps: int,
    extra: tuple[str, ...] = (),
    lr: float | None = None,
) -> None:
    """``got_dir`` logged ``steps`` steps with ``want_dir``'s numbers (STEP_METRICS + ``extra``) and, when
    ``lr`` is given, its last checkpoint's trainable weights lie within 0.01·lr of ``want_dir``'s."""
    want, got = step_lines(want_dir), step_lines(got_dir)
    assert [r["step"] for r in got] == list(range(1, steps + 1))
    for w, g in zip(want, got, strict=True):
        for key in STEP_METRICS + extra:
            assert g[key] == pytest.approx(w[key], rel=1e-5, abs=1e-9), (g["step"], key)
    if lr is None:
        return
    weights = [
        load_file(str(latest_checkpoint(run_dir) / "trainable.safetensors"))
        for run_dir in (want_dir, got_dir)
    ]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=0, atol=0.01 * lr, msg=name)
