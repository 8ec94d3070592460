"""Checkpoints of sharded state (FSDP2 ``fully_shard`` over gloo, torch.distributed.checkpoint):
written atomically by two processes into one checkpoint folder, loaded back exactly; loaded by one
process into an unsharded model, and the other way round (DCP reshards on load)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dist_checkpoint_worker import STEP, full_state, step, tiny
from launch import TORCHRUN, run_two_processes

from raco.config import ConfigError
from raco.training.checkpoint import (
    CHECKPOINTS,
    SHARDED,
    is_sharded,
    list_checkpoints,
    load_sharded,
    read_checkpoint,
    save_sharded,
)

WORKER = Path(__file__).with_name("dist_checkpoint_worker.py")


def _equal(a, b, where: str = "") -> None:
    """Nested state dicts equal exactly (tensors bit for bit)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkpoint-two-processes")
    model, optimizer = tiny()  # what one unsharded process saves, for the workers to load (1 → 2)
    for seed in range(STEP):
        step(model, optimizer, seed)
    save_sharded(root / "one" / f"step-{STEP:08d}", model, optimizer)
    torch.save(full_state(model, optimizer), root / "one-expected.pt")
    run_two_processes(WORKER, root)
    return root


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")
def test_two_processes_save_and_load_sharded_state_exactly(two_processes):
    expected = torch.load(two_processes / "expected.pt", weights_only=True)
    assert expected["optim"]["state"]  # AdamW's moments are in the checkpoint
    for rank in (0, 1):
        _equal(torch.load(two_processes / f"reloaded-{rank}.pt", weights_only=True), expected, f"rank {rank}")
    (folder,) = list_checkpoints(two_processes / "run")  # written twice at the same step: one folder
    assert sorted(p.name for p in (folder / SHARDED).iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    assert [p.name for p in (two_processes / "run" / CHECKPOINTS).iterdir()] == [
        folder.name
    ]  # no temporaries
    saved = read_checkpoint(folder, 1, 2)  # as the loop's restore reads it
    assert saved["sharded"] and saved["trainable"] is None and saved["optim"] == {"scheduler": {}}
    assert saved["state"]["step"] == STEP


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")
def test_two_sharded_processes_load_what_one_process_saved(two_processes):
    """1 → 2 processes: each process loads its shards' parts of an unsharded process's checkpoint."""
    expected = torch.load(two_processes / "one-expected.pt", weights_only=True)
    for rank in (0, 1):
        _equal(torch.load(two_processes / f"from-one-{rank}.pt", weights_only=True), expected, f"rank {rank}")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")
def test_one_process_loads_what_two_sharded_processes_saved(two_processes):
    """2 → 1 processes: DCP reshards on load, here into a plain (unsharded) model and optimizer."""
    model, optimizer = tiny(seed=1)
    step(model, optimizer, 7)  # other weights and moments than the saved ones
    assert not is_sharded(model)
    (folder,) = list_checkpoints(two_processes / "run")
    load_sharded(folder, model, optimizer)
    _equal(full_state(model, optimizer), torch.load(two_processes / "expected.pt", weights_only=True))


def test_one_process_round_trip_and_refusals(tmp_path):
    """save_sharded works without torch.distributed too, and loads into a fresh model and optimizer; a
    folder without sharded state is refused."""
    model, optimizer = tiny()
    for seed in range(STEP):
        step(model, optimizer, seed)
    expected = full_state(model, optimizer)
    folder = save_sharded(tmp_path / "step-00000002", model, optimizer, {"note.txt": "hello"})
    assert (folder / "note.txt").read_text() == "hello"
    fresh, fresh_optimizer = tiny(seed=5)  # as a resumed run builds them: other weights, no moments yet
    load_sharded(folder, fresh, fresh_optimizer)
    _equal(full_state(fresh, fresh_optimizer), expected)
    with pytest.raises(ConfigError, match="holds no sharded state"):
        load_sharded(tmp_path, model, optimizer)
