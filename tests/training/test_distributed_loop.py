"""The loop under two processes (torchrun, gloo) equals one process with the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from raco.training.loop import train
from raco.training.metrics import read_metrics

SCRIPT = "import sys\nfrom raco.training.loop import train\ntrain(sys.argv[1])\n"


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="torchrun not available",
)
def test_two_processes_match_one(tiny_config, tmp_path):
    two = tiny_config(**{"train.max_steps": 3, "train.batch_size": 4, "output_dir": str(tmp_path / "two")})
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(two))
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    proc = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29641",
            str(tmp_path / "run.py"),
            str(tmp_path / "two.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = train(
        tiny_config(**{"train.max_steps": 3, "train.batch_size": 8, "output_dir": str(tmp_path / "one")})
    )
    losses = [
        [r["loss/friendly"] for r in read_metrics(d) if "loss/friendly" in r]
        for d in (one.run_dir, tmp_path / "two")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    a, b = (load_file(str(d / "model" / "model.safetensors")) for d in (one.run_dir, tmp_path / "two"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4)
