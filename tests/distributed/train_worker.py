"""Worker of test_fsdp2_training: ``torchrun --nproc_per_node 2 train_worker.py DIR NAME[,NAME...]``.

Run with accelerate's FSDP2 settings in the environment (``ACCELERATE_USE_FSDP=true``,
``FSDP_VERSION=2``: what ``accelerate launch --config_file configs/accelerate/fsdp2.yaml`` sets), or
none (replicated, DDP through ``accelerator.prepare_model``). For every NAME, ``DIR/NAME.yaml`` is
trained; a NAME ending in ``-resume`` is instead trained from a copy of ``DIR/NAME-without-resume``
cut back to its step-2 checkpoint (a killed run) and resumed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch.distributed as dist
from exits import exit_now

from raco.training.checkpoint import list_checkpoints
from raco.training.loop import resume, train

RESUME_FROM = 2


def cut_back(run_dir: Path, step: int, target: Path) -> None:
    """Copy ``run_dir`` to ``target`` as a run killed right after checkpoint ``step``."""
    shutil.copytree(run_dir, target)
    for folder in list_checkpoints(target):
        if int(folder.name.split("-")[1]) > step:
            shutil.rmtree(folder)
    shutil.rmtree(target / "model")
    (target / "summary.json").unlink()


def main(root: Path, names: list[str]) -> None:
    for name in names:
        if name.endswith("-resume"):
            if dist.get_rank() == 0:
                cut_back(root / name.removesuffix("-resume"), RESUME_FROM, root / name)
            dist.barrier()
            resume(root / name)
        else:
            train(root / f"{name}.yaml")
    dist.destroy_process_group()  # gloo threads alive at interpreter exit abort the process
    exit_now()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(","))
