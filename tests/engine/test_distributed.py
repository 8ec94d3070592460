"""2-process CPU (gloo, torchrun) training ends with the same parameters as 1 process on the same
global batches: per-objective gradients are all-reduced explicitly by the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).parent / "dist_worker.py"


def _run(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_two_processes_match_one(tmp_path, normalize):
    torchrun = Path(sys.executable).parent / "torchrun"
    args = [str(WORKER), str(tmp_path), "fused", normalize]
    _run([sys.executable, *args], tmp_path)
    _run([str(torchrun), "--standalone", "--nproc_per_node", "2", *args], tmp_path)
    single = torch.load(tmp_path / f"params_{normalize}_1_0.pt")
    rank0, rank1 = (torch.load(tmp_path / f"params_{normalize}_2_{r}.pt") for r in range(2))
    initial_differs = False
    from engine_fixtures import tiny_model

    start = dict(tiny_model("llama", seed=0).named_parameters())
    for name, p in single.items():
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)  # ranks agree exactly
        torch.testing.assert_close(rank0[name], p, rtol=1e-4, atol=1e-6, msg=name)
        initial_differs |= not torch.allclose(p, start[name].detach())
    assert initial_differs  # training actually moved the parameters
