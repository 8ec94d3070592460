"""Worker of test_reference_sharded: ``torchrun --nproc_per_node 2 dist_reference_worker.py DIR``.

Every process computes the toy training rows' reference table together (``shared_reference_table``)
for a few batch sizes and writes its copy to ``DIR/table-<size>-<rank>.safetensors``; then the cache
is filled by both processes (one computation, written by process 0) and read again (no computation);
a key that differs between processes is refused; last, the training run ``DIR/cached.yaml``
(``model.reference: cached``) with its cache in ``DIR/run-cache``. ``DIR/done-<rank>`` marks a clean
finish."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from shard_fixtures import BATCH_SIZES, TABLE_ROWS, toy

import raco.models.reference as reference_module
from raco.models.reference import cached_reference, shared_reference_table
from raco.shard import gather_contiguous, gather_strided
from raco.training.loop import train


def check_gathers(rank: int) -> None:
    """Uneven shares come back whole and in item order."""
    local = torch.arange(3 - rank, dtype=torch.float64)[:, None] + 10 * rank  # 3 rows, then 2
    assert gather_contiguous(local).flatten().tolist() == [0, 1, 2, 10, 11]
    assert gather_strided(local).flatten().tolist() == [0, 10, 1, 11, 2]


def main(root: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    check_gathers(rank)
    made = toy(root / f"data-{rank}")
    reference, pairs, make_batch = made.reference, made.data.train[:TABLE_ROWS], made.collate
    for size in BATCH_SIZES:
        table = shared_reference_table(reference, pairs, make_batch, size, progress=rank == 0)
        save_file({"logps": table}, str(root / f"table-{size}-{rank}.safetensors"))
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return shared_reference_table(reference, pairs, make_batch, 8)

    key = {"model": "tiny-random", "pairs": "toy"}
    first = cached_reference(key, compute, root=root / "cache")
    again = cached_reference(key, compute, root=root / "cache")
    assert len(calls) == 1 and torch.equal(first.table, again.table)
    try:
        cached_reference({**key, "weights": f"rank-{rank}"}, compute, root=root / "cache")
    except RuntimeError as err:
        assert "disagree on weights" in str(err), err
    else:
        raise AssertionError("a key that differs between processes was accepted")
    reference_module.cache_dir = lambda: root / "run-cache"  # type: ignore[assignment]
    train(root / "cached.yaml")
    (root / f"done-{rank}").write_text("ok")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
