"""``raco train`` under two processes with accelerate's FSDP2 config (gloo, CPU) equals one process on
the same global batches: every metrics line (losses, coefficients, Gram, rewards, held-out metrics) and
the saved model; a run killed after its step-2 checkpoint (sharded model and optimizer state through
torch.distributed.checkpoint) and resumed ends exactly as the uninterrupted one. The replicated mode
(DDP through ``accelerator.prepare_model``) is covered by tests/training/test_distributed_loop.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from toy_data import tiny_tree, write_toy

from raco.training.checkpoint import list_checkpoints
from raco.training.loop import train
from raco.training.metrics import read_metrics

WORKER = Path(__file__).with_name("train_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
WALL_CLOCK = {"tokens_per_second"}
FSDP2_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "true"}

pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")


def _trees(root: Path) -> dict[str, tuple[dict, dict]]:
    """name → (2-process config: 2 × 2 micro-batches × 4 pairs, 1-process config: 16 pairs)."""
    files = (write_toy(root / "train.jsonl", 96, 0, ties=0.3), write_toy(root / "eval.jsonl", 16, 1))
    common = {"train.max_steps": 3, "train.eval_every": 2, "train.eval_batch_size": 8, "train.save_every": 1}
    lora = {
        "lora.enabled": True,
        "lora.r": 4,
        "lora.dropout": 0.0,
        "lora.target_modules": ["q_proj", "v_proj"],
    }
    variants = {"full": {}, "lora": {**lora, "model.reference": "auto"}}
    out = {}
    for name, extra in variants.items():
        two = tiny_tree(
            *files, root / name, **common, **extra, **{"train.batch_size": 4, "train.grad_accum": 2}
        )
        one = tiny_tree(*files, root / f"{name}-one", **common, **extra, **{"train.batch_size": 16})
        out[name] = (two, one)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fsdp2-training")
    trees = _trees(root)
    for name, (two, _) in trees.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(two))
    env = {
        **os.environ,
        **FSDP2_ENV,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
    }
    names = "full,lora,full-resume"
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(WORKER), str(root), names]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root, trees


def _lines(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in read_metrics(run_dir)]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    model = run_dir / "model"
    name = (
        "adapter_model.safetensors" if (model / "adapter_model.safetensors").exists() else "model.safetensors"
    )
    return load_file(str(model / name))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["full", "lora"])
def test_fsdp2_run_equals_one_process(runs, name):
    root, trees = runs
    one = train(trees[name][1]).run_dir
    a, b = _lines(one), _lines(root / name)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys(), x["step"]
        for key, value in x.items():
            if isinstance(value, float):
                assert y[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (x["step"], key)
    wa, wb = _weights(one), _weights(root / name)
    assert wa.keys() == wb.keys()
    for key, p in wa.items():
        assert float((p - wb[key]).norm() / p.norm().clamp(min=1e-30)) < 1e-5, key
    (sharded,) = {(c / "sharded").is_dir() for c in list_checkpoints(root / name)}
    assert sharded  # the checkpoints hold DCP shards


@pytest.mark.slow
def test_fsdp2_kill_and_resume_equals_uninterrupted(runs):
    root, _ = runs
    assert _lines(root / "full-resume") == _lines(root / "full")
    straight, resumed = _weights(root / "full"), _weights(root / "full-resume")
    for key, p in straight.items():
        assert torch.equal(p, resumed[key]), key
