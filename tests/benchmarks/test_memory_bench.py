"""benchmarks/memory.py (issue 14): the projection's arithmetic by hand, the batch it measures, the
engine patch it uses for chunked log-probs, and the --quick run end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import raco.gradients.engine as engine_module

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("memory_bench", ROOT / "benchmarks" / "memory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mem = _load()


def test_pair_batch_is_one_pair_with_shared_prompt_and_half_responses():
    batch = mem.pair_batch(8, vocab=50, k=4)
    assert batch["input_ids"].shape == (2, 8)
    assert torch.equal(batch["input_ids"][0, :4], batch["input_ids"][1, :4])
    assert batch["response_mask"].sum().item() == 8 and not batch["response_mask"][:, :4].any()
    assert batch["signs"].tolist() == [[1.0, -1.0, 1.0, -1.0]]


def test_engine_chunking_patches_and_restores():
    original = engine_module.response_logps
    with mem.engine_chunking(16):
        assert engine_module.response_logps.keywords == {"chunk_tokens": 16}
    assert engine_module.response_logps is original


def test_projection_by_hand():
    """h 256 → 4096 is ×16 width, 4 → 32 layers ×8: 1000 B/token measured is 0.128 MB/token for 8B; the
    longest length is used; log-probs scale by the number of float32 [N, V] (or [C, V]) tensors."""
    engine = [
        {"tokens": 512, "checkpointing": True, "variant": "fused_k2", "act_bytes_per_token": 5.0},
        {"tokens": 2048, "checkpointing": True, "variant": "fused_k2", "act_bytes_per_token": 1000.0},
        {"tokens": 2048, "checkpointing": False, "variant": "weighted_sum", "act_bytes_per_token": 2000.0},
    ]
    logprobs = [
        {"vocab": 1000, "tokens": 2048, "full_logit_copies": 9.0, "chunked_mib": 9.0},
        {"vocab": 131072, "tokens": 2048, "full_logit_copies": 3.0, "chunked_mib": 256.0},
    ]
    out = mem.project_llama3(engine, logprobs, hidden=256, layers=4, chunk=256)
    assert out["fused_k2_ckpt_act_mb_per_token"] == pytest.approx(1000 * 16 * 8 / 1e6)
    assert out["weighted_sum_nockpt_act_mb_per_token"] == pytest.approx(2000 * 128 / 1e6)
    assert out["logprobs_full_mb_per_response_token"] == pytest.approx(3 * 4 * 128256 / 1e6)
    copies = 256 * 2**20 / (256 * 131072 * 4)  # = 2 float32 [C, V] tensors
    assert out["logprobs_chunked_gb_per_step"] == pytest.approx(copies * 256 * 128256 * 4 / 1e9)


def test_quick_run(tmp_path):
    out = tmp_path / "memory.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--quick", "--json", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    result = json.loads(out.read_text())
    variants = {r["variant"] for r in result["engine"]}
    assert variants == {"weighted_sum", "plain_k2", "fused_k2", "plain_k4", "fused_k4"}
    assert {r["checkpointing"] for r in result["engine"]} == {False, True}
    for row in result["engine"] + result["logprobs"]:
        assert all(v >= 0 for v in row.values() if isinstance(v, float))
    assert len(result["logprobs"]) == 2 and "logprobs_chunked_gb_per_step" in result["llama3_8b"]
