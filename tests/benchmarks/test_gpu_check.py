"""benchmarks/gpu_check.sh and gpu_check.py (issue 13) on CPU: the script's steps as a dry run, the
engine checks in process, and (slow) the whole script's --quick CPU run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _script(*args: str, device: str = "cpu", timeout: int = 60, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPU_CHECK_DEVICE": device, "PYTHON": sys.executable, **env}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_dry_run_lists_every_step_and_runs_nothing():
    done = _script("--dry-run", device="cuda")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for step in (
        "1. nvidia-smi",
        "2. fused == plain",
        "3. single-process NCCL",
        "4a. raco train",
        "4b.",
        "5. FSDP2",
    ):
        assert f"DRY   {step}" in out, step
    assert "benchmarks/gpu_check.py --device cuda --models tiny qwen3" in out
    assert "torch.distributed.run --standalone --nproc_per_node 1" in out
    assert "--config_file configs/accelerate/fsdp2.yaml --num_processes 1" in out
    assert "--model.dtype bfloat16" in out


def test_unknown_argument_is_an_error():
    done = _script("--fast")
    assert done.returncode == 2 and "unknown argument --fast" in done.stderr


def test_engine_checks_run_on_cpu(capsys, tmp_path):
    """gpu_check.py's fused == plain and step-cost checks on the tiny model (float32, one repeat)."""
    import json

    gpu_check = load_benchmark("gpu_check")
    out = tmp_path / "engine.json"
    argv = ["--device", "cpu", "--models", "tiny", "--ks", "2", "--repeats", "1", "--shape", "2", "8", "16"]
    assert gpu_check.main([*argv, "--dtype", "float32", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fused == plain, k=2: max relative error" in printed and "all checks passed" in printed
    results = json.loads(out.read_text())
    assert results["tiny_fused_vs_plain_k2_max_rel_error"] < 1e-4
    assert {"tiny_raco_fused_k2_ratio", "tiny_raco_plain_k2_ratio", "tiny_weighted_sum_k2_ratio"} <= set(
        results
    )


def test_make_batch_follows_raco_pairs_contract():
    gpu_check = load_benchmark("gpu_check")
    batch = gpu_check.make_batch(3, 4, 6, vocab=50, k=2, seed=0, device=__import__("torch").device("cpu"))
    assert batch["input_ids"].shape == (6, 10) and batch["signs"].shape == (3, 2)
    assert (batch["input_ids"][3:, :4] == batch["input_ids"][:3, :4]).all()  # shared prompts
    assert not batch["response_mask"][:, :4].any() and (batch["signs"][0] == 1).all()


@pytest.mark.slow
def test_quick_cpu_run_of_the_whole_script(tmp_path):
    """The script end to end on CPU: versions, engine checks, a torchrun (gloo) job, raco train under
    torchrun; the FSDP2 step is skipped without CUDA. About a minute on an idle 2-core machine."""
    done = _script("--quick", timeout=600, GPU_CHECK_OUT=str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in ("1. nvidia-smi", "2. fused == plain", "3. single-process gloo", "4a. raco train"):
        assert f"PASS  {step}" in done.stdout, step
    assert "SKIP  5. FSDP2" in done.stdout and "FAIL" not in done.stdout
    assert (tmp_path / "train-tiny" / "summary.json").is_file()
