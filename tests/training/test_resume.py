"""Exact resume: a run killed with SIGKILL mid-way and resumed equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from raco.training.checkpoint import list_checkpoints
from raco.training.cli_train import main
from raco.training.metrics import read_metrics

KILL_AT = 5  # checkpoints every 2 steps: the kill loses step 5 and resumes from step 4

KILLER = f"""
import os, signal, sys
from raco.training.loop import train

def kill(step, metrics):
    if step == {KILL_AT}:
        os.kill(os.getpid(), signal.SIGKILL)

train(sys.argv[1], on_step=kill)
"""


def _losses(run_dir: Path) -> list[tuple]:
    keys = ("friendly/loss", "concise/loss", "friendly/rewards/margins", "eval/weighted_accuracy")
    return [tuple([r["step"]] + [r.get(k) for k in keys]) for r in read_metrics(run_dir)]


def test_sigkill_then_resume_equals_uninterrupted(tiny_config, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    settings = {
        "train.max_steps": 7,
        "train.save_every": 2,
        "train.eval_every": 3,
        "train.keep_last": 2,
        "train.grad_accum": 2,
        "train.batch_size": 4,
        "train.warmup_ratio": 0.2,
        "data.max_eval_rows": 8,  # evaluations are compared between the runs: 8 rows are enough
    }
    killed = tiny_config(**settings, output_dir=str(tmp_path / "killed"))
    config_file = tmp_path / "killed.yaml"
    config_file.write_text(yaml.safe_dump(killed))
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(config_file)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run_dir = tmp_path / "killed"
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000002", "step-00000004"]
    assert max(r["step"] for r in read_metrics(run_dir)) == KILL_AT  # step 5 was logged, then lost

    # resumed in this process (the killed one is gone either way); resuming in a fresh process, after
    # kills at other points, is test_run_dir_lifecycle.py's test_killed_anywhere_and_resumed_...
    assert main(["--resume", str(run_dir)]) == 0

    straight = tiny_config(**settings, output_dir=str(tmp_path / "straight"))
    straight_file = tmp_path / "straight.yaml"
    straight_file.write_text(yaml.safe_dump(straight))
    assert main(["--config", str(straight_file)]) == 0

    assert _losses(run_dir) == _losses(tmp_path / "straight")
    final_a = load_file(str(run_dir / "model" / "model.safetensors"))
    final_b = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    assert final_a.keys() == final_b.keys()
    for name in final_a:
        assert torch.equal(final_a[name], final_b[name]), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 7


def test_resume_rejects_trajectory_flags_and_unknown_dirs(tiny_config, tmp_path, capsys):
    from raco.training.loop import train

    run_dir = train(tiny_config(**{"train.max_steps": 2})).run_dir
    assert main(["--resume", str(run_dir), "--train.lr", "1"]) == 2
    assert "--train.lr: cannot be changed when resuming" in capsys.readouterr().err
    assert main(["--resume", str(run_dir), "--config", "x.yaml"]) == 2
    assert "drop --config" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nowhere")]) == 2
    assert "not a raco run directory" in capsys.readouterr().err


def test_resume_may_change_logging_and_checkpointing(tiny_config):
    """Resuming with `--train.keep_last 1 --log.progress false` is allowed and recorded in config.yaml."""
    from raco.training.loop import resume, train

    tree = tiny_config(**{"train.max_steps": 4, "train.save_every": 1, "train.keep_last": 3})

    def stop(step, metrics):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tree, on_step=stop)
    run_dir = Path(tree["output_dir"])
    result = resume(run_dir, overrides={"train.keep_last": 1, "log.progress": False})
    assert result.steps == 4
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000004"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["keep_last"] == 1 and saved["log"]["progress"] is False
