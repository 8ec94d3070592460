"""Worker of test_resume_world_size: ``torchrun --nproc_per_node 2 resume_world_size_worker.py DIR``.

Under accelerate's FSDP2 settings (set here, as ``accelerate launch --config_file
configs/accelerate/fsdp2.yaml`` sets them), in one launch:

1. ``DIR/two.yaml`` trained uninterrupted (sharded checkpoints at steps 2 and 4);
2. ``DIR/one-to-two``, the test's 1-process run cut back to its step-2 checkpoint (unsharded), resumed
   on these 2 processes with ``train.batch_size`` halved (the same global batches).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FSDP2_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "true"}
os.environ.update(FSDP2_ENV)  # before accelerate reads its environment

import torch.distributed as dist  # noqa: E402

from raco.training.loop import resume, train  # noqa: E402

HALF_BATCH = 4  # train.batch_size of the 2-process runs (the 1-process one has 8)
# (not imported by the test: the environment above would make its own runs FSDP2 ones)


def main(root: Path) -> None:
    train(root / "two.yaml")
    resume(root / "one-to-two", overrides={"train.batch_size": HALF_BATCH})
    dist.destroy_process_group()  # gloo threads alive at interpreter exit abort the process


if __name__ == "__main__":
    main(Path(sys.argv[1]))
