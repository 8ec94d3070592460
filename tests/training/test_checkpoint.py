"""Checkpoints: atomic writes, keep-last-K, round trips of weights and RNG states."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from raco.config import ConfigError
from raco.training import checkpoint as ckpt


def _files(value: float) -> dict:
    return {
        "trainable.safetensors": {"w": torch.full((2, 2), value)},
        "optimizer.pt": {"optimizer": {"state": {}, "lr": value}, "scheduler": {"last_epoch": 3}},
        "rng-0.pt": ckpt.rng_state(),
        "state.json": {"step": int(value), "processes": 1},
        "config.yaml": "a: 1\n",
    }


def test_keep_last_k_and_latest(tmp_path):
    for step in (2, 4, 6, 8):
        ckpt.write_checkpoint(tmp_path, step, _files(step), keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000006", "step-00000008"]
    saved = ckpt.read_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert saved["state"]["step"] == 8 and torch.equal(saved["trainable"]["w"], torch.full((2, 2), 8.0))
    assert saved["optim"]["scheduler"]["last_epoch"] == 3


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_debris(tmp_path):
    ckpt.write_checkpoint(tmp_path, 2, _files(2), keep_last=3)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    broken = {**_files(4), "optimizer.pt": Unpicklable()}
    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.write_checkpoint(tmp_path, 4, broken, keep_last=3)
    assert [p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir()] == ["step-00000002"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000002"


def test_temporary_folders_are_never_taken_for_checkpoints(tmp_path):
    ckpt.write_checkpoint(tmp_path, 2, _files(2), keep_last=3)
    (tmp_path / ckpt.CHECKPOINTS / ".tmp-step-00000004-abc").mkdir()  # a writer killed mid-way
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000002"


def _draw() -> tuple[float, float, float]:
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_rng_states_round_trip():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    python, torch_state = ckpt.python_rng_state(), ckpt.torch_rng_state()
    expected = _draw()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.set_python_rng_state(python)
    ckpt.set_torch_rng_state(torch_state)
    assert _draw() == expected


def test_a_replaced_numpy_generator_is_a_clear_error_not_an_unpacking_crash():
    original = np.random.get_bit_generator()
    np.random.set_bit_generator(np.random.PCG64(0))
    try:
        with warnings.catch_warnings(), pytest.raises(RuntimeError, match=r"PCG64.*restore MT19937"):
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's own note on the legacy state
            ckpt.python_rng_state()
    finally:
        np.random.set_bit_generator(original)
    assert isinstance(np.random.get_state(), tuple)


def test_each_process_reads_its_own_random_state(tmp_path):
    """rng-<rank>.pt per process (one process here: gather_to_main is [value]); another process count
    is refused; a checkpoint of the older layout (process 0's state only) is read with a warning."""
    states, expected = [], []
    for seed in (1, 2):
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        (state,) = ckpt.gather_to_main(ckpt.rng_state())
        states.append(state)
        expected.append(_draw())
    files = {
        **_files(2),
        "rng-0.pt": states[0],
        "rng-1.pt": states[1],
        "state.json": {"step": 2, "processes": 2},
    }
    folder = ckpt.write_checkpoint(tmp_path, 2, files, keep_last=1)
    for rank in (1, 0):
        ckpt.set_rng_state(ckpt.read_checkpoint(folder, rank, processes=2)["rng"])
        assert _draw() == expected[rank]
    with pytest.raises(ConfigError, match=r"written by 2 processes; resume it with 2 \(this run has 1\)"):
        ckpt.read_checkpoint(folder, 0, processes=1)

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    old = {**_files(4), "rng-0.pt": ckpt.torch_rng_state()}
    old["state.json"] = {"step": 4, "processes": 2, "rng": ckpt.python_rng_state()}
    folder = ckpt.write_checkpoint(tmp_path, 4, old, keep_last=1)
    with pytest.warns(RuntimeWarning, match="no random state for process 1; using process 0's"):
        saved = ckpt.read_checkpoint(folder, 1, processes=2)
    ckpt.set_rng_state(saved["rng"])
    assert _draw() == expected[0]


def test_trainable_weights_round_trip_and_mismatch_is_an_error():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[1].requires_grad_(False)
    state = ckpt.trainable_state(model)
    assert set(state) == {"0.weight", "0.bias"}
    other = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    other[1].requires_grad_(False)
    ckpt.load_trainable(other, state)
    assert torch.equal(other[0].weight, model[0].weight)
    with pytest.raises(RuntimeError, match="does not match"):
        ckpt.load_trainable(other, {"0.weight": state["0.weight"]})
