"""2 processes with FSDP2 (gloo, CPU) = 1 process: the sharded engine (per-objective gradients
reduce-scattered from the fused hooks, or by FSDP2's own backward once per objective on the plain
path; Gram from shard-local partial sums; the update written into the sharded ``.grad``) gives the
single-process engine's losses, coefficients and final weights (relative 1e-5), for full fine-tuning
and LoRA, k = 2 and 3, fused and plain, gradient checkpointing off and on (and the scalarized
weighted sum, ``auto`` falling back to the plain path for GPT-2, and ``store="gram"``, which keeps no
per-objective gradients: their shards are folded into H as they arrive); each rank holds half the
per-objective gradient bytes. The single-process engine is
verified against independent references in tests/engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("fsdp_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
CHEAP = ["full-k2-gc0", "lora-k3-gc1", "lora-k2-gc0-plain", "full-k3-gc1-gram"]
MATRIX = [f"{kind}-k{k}-gc{gc}" for kind in ("full", "lora") for k in (2, 3) for gc in (0, 1)]
MATRIX += [f"{kind}-k{k}-gc{gc}-plain" for kind in ("full", "lora") for k in (2, 3) for gc in (0, 1)]
MATRIX += ["full-k2-gc0-scalarized", "lora-k3-gc1-scalarized", "gpt2-k2-gc0-auto"]
MATRIX += ["full-k3-gc1-gram", "lora-k2-gc0-gram", "full-k2-gc0-gram"]
REST = [case for case in MATRIX if case not in CHEAP]

pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")


def launch(out: Path, cases: list[str]) -> Path:
    """Run the worker alone and under ``torchrun --nproc_per_node 2`` for ``cases``."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
    }
    args = [str(WORKER), str(out), ",".join(cases)]
    for command in ([sys.executable, *args], [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", *args]):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=out)
        assert proc.returncode == 0, failure(proc.stderr)
    return out


def failure(stderr: str) -> str:
    """The lines that say what failed (torchrun's summary at the end names only the signal)."""
    keep = [line for line in stderr.splitlines() if any(w in line for w in ("Error", "error", "terminate"))]
    return "\n".join(keep[-40:]) + "\n---\n" + stderr[-2000:]


@pytest.fixture(scope="module")
def cheap(tmp_path_factory) -> Path:
    return launch(tmp_path_factory.mktemp("fsdp2-cheap"), CHEAP)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Path:
    return launch(tmp_path_factory.mktemp("fsdp2-matrix"), REST)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm().clamp(min=1e-30))


def check_case(out: Path, case: str) -> None:
    one, two = (torch.load(out / f"{case}-{n}.pt") for n in (1, 2))
    for key in ("losses", "coefficients"):
        for step, (a, b) in enumerate(zip(one[key], two[key], strict=True)):
            assert relative(a, b) < 1e-5, (key, step, a, b)
    assert one["params"].keys() == two["params"].keys()
    for name, p in one["params"].items():
        assert relative(p, two["params"][name]) < 1e-5, name
    (alone,), halves = one["peak_store_bytes"], two["peak_store_bytes"]
    # every parameter's rows split evenly over 2 ranks for these shapes: exactly half per rank
    assert halves == [alone / 2, alone / 2]
    assert (alone == 0) == case.endswith(("scalarized", "gram"))  # store "gram": no gradients kept


@pytest.mark.parametrize("case", CHEAP)
def test_fsdp2_two_processes_match_one(cheap, case):
    check_case(cheap, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", REST)
def test_fsdp2_matrix(matrix, case):
    check_case(matrix, case)


def test_training_moves_the_weights(cheap):
    from engine_fixtures import tiny_model  # tests/engine (conftest.py)

    start = dict(tiny_model("llama", seed=0).named_parameters())
    trained = torch.load(cheap / "full-k2-gc0-1.pt")["params"]
    assert any(not torch.allclose(p, start[name].detach()) for name, p in trained.items())
