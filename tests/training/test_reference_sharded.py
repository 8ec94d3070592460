"""The cached reference table computed by two processes (torchrun, gloo), each its block of batches,
and gathered: every process holds the table one process computes, bit for bit; the cache is computed
once by both and written by process 0; a key that differs between processes is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from launch import TORCHRUN, one_thread, run_two_processes
from safetensors.torch import load_file
from shard_fixtures import BATCH_SIZES, TABLE_ROWS, toy
from toy_data import tiny_tree, write_toy

import raco.models.reference as reference_module
from raco.models.reference import compute_reference_table, shared_reference_table
from raco.shard import rounds, shard_range
from raco.training.inputs import eval_batches
from raco.training.loop import train
from raco.training.metrics import read_metrics

WORKER = Path(__file__).with_name("dist_reference_worker.py")


def test_shard_range_covers_in_order():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            blocks = [shard_range(n, r, world) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
            assert max(map(len, blocks)) == rounds(n, world)
    with pytest.raises(ValueError, match="rank 2 of 2"):
        shard_range(4, 2, 2)


def test_one_process_shared_table_is_the_plain_table(tmp_path):
    made = toy(tmp_path)
    reference, pairs, collate = made.reference, made.data.train[:TABLE_ROWS], made.collate
    for size in BATCH_SIZES:
        plain = compute_reference_table(
            reference, lambda size=size: eval_batches(pairs, collate, size), len(pairs)
        )
        assert torch.equal(shared_reference_table(reference, pairs, collate, size), plain)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")
def test_two_processes_give_the_one_process_table(tmp_path, monkeypatch):
    """Tables of a few batch sizes; the cache filled by both processes; and a training run with
    ``model.reference: cached`` whose cached tables are the 1-process run's, bit for bit."""
    (tmp_path / "cached.yaml").write_text(yaml.safe_dump(_cached_run(tmp_path, "two", 2)))
    run_two_processes(WORKER, tmp_path)
    assert (tmp_path / "done-0").exists() and (tmp_path / "done-1").exists()
    made = toy(tmp_path / "here")
    reference, pairs, collate = made.reference, made.data.train[:TABLE_ROWS], made.collate
    with one_thread():
        for size in BATCH_SIZES:
            one = compute_reference_table(
                reference, lambda size=size: eval_batches(pairs, collate, size), len(pairs)
            )
            for rank in (0, 1):
                two = load_file(str(tmp_path / f"table-{size}-{rank}.safetensors"))["logps"]
                assert torch.equal(two, one), (size, rank, (two - one).abs().max())
    assert len(list((tmp_path / "cache" / "reference-logps").glob("*.safetensors"))) == 1
    monkeypatch.setattr(reference_module, "cache_dir", lambda: tmp_path / "one-cache")
    with one_thread():
        one = train(_cached_run(tmp_path, "one", 1))
    for a, b in zip(read_metrics(one.run_dir), read_metrics(tmp_path / "two"), strict=True):
        assert a.keys() == b.keys()
        for key in a.keys() - {"tokens_per_second"}:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)  # as 1 process
    tables = {
        name: sorted((root / "reference-logps").glob("*.safetensors"))
        for name, root in (("one", tmp_path / "one-cache"), ("two", tmp_path / "run-cache"))
    }
    assert [p.name for p in tables["one"]] == [p.name for p in tables["two"]] and len(tables["one"]) == 2
    for a, b in zip(tables["one"], tables["two"], strict=True):  # train and eval rows
        assert torch.equal(load_file(str(a))["logps"], load_file(str(b))["logps"])


def _cached_run(root: Path, name: str, processes: int) -> dict:
    """A ``model.reference: cached`` run on the toy files: 8 rows a step in all."""
    files = write_toy(root / "files" / "train.jsonl", 96, 0), write_toy(root / "files" / "eval.jsonl", 16, 1)
    overrides = {"model.reference": "cached", "train.max_steps": 2, "train.batch_size": 8 // processes}
    return tiny_tree(*files, root / name, **overrides, **{"train.eval_batch_size": 5})
