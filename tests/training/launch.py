"""Two-process gloo runs of a worker script for the distributed tests of this folder, and the thread
setting their 1-process comparisons need."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

TORCHRUN = Path(sys.executable).with_name("torchrun")
SRC = Path(__file__).resolve().parents[2] / "src"


def run_two_processes(worker: Path, root: Path) -> None:
    """``torchrun --nproc_per_node 2 worker root`` (one thread per process; raco and this folder
    importable); fails the test with the tail of its stderr."""
    path = os.pathsep.join([str(SRC), str(worker.parent)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(worker), str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """As the workers ran (a matrix product's rounding may depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
