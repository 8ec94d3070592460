"""Worker of test_distributed_loop: ``torchrun --nproc_per_node 2 dist_train_worker.py DIR``.

In one launch (process start-up and imports cost more than these tiny runs):

1. ``DIR/global.yaml`` with optimizer step 2 made non-finite (``non_finite_at``): its metrics are
   compared with one process on the same global batches.
2. ``DIR/dropout.yaml`` (LoRA with dropout) uninterrupted; then a copy cut back to its step-2
   checkpoint (``cut_back``) is resumed in ``DIR/dropout-resumed``.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import torch.distributed as dist

from raco.gradients import GradientEngine, NonFiniteGradientError
from raco.training.checkpoint import list_checkpoints
from raco.training.loop import resume, train

RESUME_FROM = 2


@contextlib.contextmanager
def non_finite_at(step: int) -> Iterator[None]:
    """Within the block, the ``step``-th optimizer step (1-based) fails as non-finite on every process
    (after the engine has solved it, as a real NaN would), so it is skipped."""
    original = GradientEngine.finish_step
    calls = itertools.count(1)

    def finish_step(self):
        report = original(self)
        if next(calls) == step:
            raise NonFiniteGradientError("non-finite gradients (simulated)")
        return report

    GradientEngine.finish_step = finish_step
    try:
        yield
    finally:
        GradientEngine.finish_step = original


def cut_back(run_dir: Path, step: int, target: Path) -> None:
    """Copy ``run_dir`` to ``target`` as a run stopped right after checkpoint ``step``: later
    checkpoints, the final model and the summary removed (metrics.jsonl is truncated on resume)."""
    shutil.copytree(run_dir, target)
    for folder in list_checkpoints(target):
        if int(folder.name.split("-")[1]) > step:
            shutil.rmtree(folder)
    shutil.rmtree(target / "model")
    (target / "summary.json").unlink()


def main(root: Path) -> None:
    with non_finite_at(2):
        train(root / "global.yaml")
    dropout = train(root / "dropout.yaml").run_dir
    if dist.get_rank() == 0:
        cut_back(dropout, RESUME_FROM, root / "dropout-resumed")
    dist.barrier()
    resume(root / "dropout-resumed")
    dist.destroy_process_group()  # gloo threads alive at interpreter exit abort the process


if __name__ == "__main__":
    main(Path(sys.argv[1]))
