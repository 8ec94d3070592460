"""Every tensor raco (and FSDP2 under it) hands to a torch.distributed collective lives on the compute
device — NCCL rejects CPU tensors. A 2-process run wraps every collective (collectives_worker.py) and
records each call's tensor devices: engine steps on every path (FSDP2 included), and a short
``raco.train`` run (step metrics, held-out evaluation, checkpoints). Here the compute device is the
CPU; benchmarks/gpu_check.sh runs the same worker with ``cuda``, where the check has teeth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("collectives_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")

pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")


def test_every_collective_tensor_is_on_the_compute_device(tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
    }
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(WORKER), str(tmp_path), "cpu"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        calls = json.loads((tmp_path / f"calls-{rank}.json").read_text())
        expected = json.loads((tmp_path / f"expected-{rank}.json").read_text())
        names = {name for name, _ in calls}
        # not vacuous: raco's all-reduces, FSDP2's all-gathers and reduce-scatters were all seen
        assert len(calls) >= 30, len(calls)
        assert {"all_reduce", "reduce_scatter_tensor"} <= names, names
        assert names & {"all_gather_single", "all_gather_into_tensor"}, names
        for name, devices in calls:
            assert devices, name  # every call carried tensors
            assert all(d == expected for d in devices), (name, devices)
        # per-objective gradients of the tiny Llama's 21 parameters travel in one bucket: a step is
        # the loss denominators, one bucket and the losses (per parameter it would be 23 calls)
        engine_calls = json.loads((tmp_path / f"engine-calls-{rank}.json").read_text())
        assert engine_calls["fused-step"] == engine_calls["plain-step"] == 3, engine_calls
