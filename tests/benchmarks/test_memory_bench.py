"""benchmarks/memory.py (issue 14): the projection's arithmetic by hand, the batch it measures, the
engine patch it uses for chunked log-probs, and the --quick run end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


mem = load_benchmark("memory")


def test_pair_batch_is_one_pair_with_shared_prompt_and_half_responses():
    batch = mem.pair_batch(8, vocab=50, k=4)
    assert batch["input_ids"].shape == (2, 8)
    assert torch.equal(batch["input_ids"][0, :4], batch["input_ids"][1, :4])
    assert batch["response_mask"].sum().item() == 8 and not batch["response_mask"][:, :4].any()
    assert batch["signs"].tolist() == [[1.0, -1.0, 1.0, -1.0]]


def test_engine_chunking_sets_the_engines_chunk_and_restores():
    model = mem.llama(64, 16, 1)
    with mem.engine_chunking(16):
        _, chunked = mem.engine_variant(model, "fused", 2, mem.pair_batch(8, vocab=64, k=2))
    _, whole = mem.engine_variant(model, "fused", 2, mem.pair_batch(8, vocab=64, k=2))
    assert chunked["engine"].logprob_chunk == 16 and whole["engine"].logprob_chunk is None


def test_slopes_and_projection_by_hand():
    """act = 10 MiB + 3000 B/token over the lengths (2T tokens per step) → slope 3000, fixed 10 MiB.
    Depth: 4 layers at 3000 B/token, 2 layers at 2000 → 500 per layer, 1000 rest; h 256 → 4096 is ×16
    width, so 8B holds (32 · 500 + 1000) · 16 B/token. Log-probs: copies of float32 [N, V] / [C, V]."""
    engine = [
        {
            "tokens": t,
            "layers": 4,
            "checkpointing": True,
            "variant": v,
            "act_bytes_per_token": (10 * 2**20 + b * 2 * t) / (2 * t),
        }
        for t in (512, 1024, 2048)
        for v, b in (("weighted_sum", 1000.0), ("fused_k2", 3000.0))
    ]
    rows = {r["variant"]: r for r in mem.slopes(engine)}
    assert rows["fused_k2"]["bytes_per_token"] == pytest.approx(3000.0)
    assert rows["fused_k2"]["fixed_mib"] == pytest.approx(10.0)
    assert rows["fused_k2"]["ratio_to_weighted_sum"] == pytest.approx(3.0)
    engine = [
        {
            "tokens": 2048,
            "layers": 4,
            "checkpointing": True,
            "variant": "fused_k2",
            "act_bytes_per_token": 3000.0,
        }
    ]
    depth = [
        {
            "tokens": 2048,
            "layers": 2,
            "checkpointing": True,
            "variant": "fused_k2",
            "act_bytes_per_token": 2000.0,
        }
    ]
    n, vocab, chunk = 2048, 131072, 256
    grow = (2 * chunk + 2 * 256) * 65536 * 4  # 2 [C, V] copies and the embedding's + head's .grad
    logprobs = [  # full: 3 [N, V] copies more than chunked
        {"vocab": vocab, "tokens": n, "chunk": chunk, "chunked_bytes_per_token": 1e9 / (2 * n)},
        {"vocab": 65536, "tokens": n, "chunk": chunk, "chunked_bytes_per_token": (1e9 - grow) / (2 * n)},
    ]
    logprobs[0]["full_bytes_per_token"] = logprobs[0]["chunked_bytes_per_token"] + 3 * n * vocab * 4 / (2 * n)
    out = mem.project_llama3(engine, depth, logprobs, hidden=256)
    assert out["fused_k2_ckpt_kb_per_token_per_layer"] == pytest.approx(500 * 16 / 1e3)
    assert out["fused_k2_ckpt_mb_per_token"] == pytest.approx((32 * 500 + 1000) * 16 / 1e6)
    assert out["fused_k2_ckpt_gb_per_pair"] == pytest.approx((32 * 500 + 1000) * 16 * 4096 / 1e9)
    assert out["logprobs_full_copies"] == pytest.approx(3.0)
    assert out["logprobs_chunked_copies"] == pytest.approx(2.0)
    assert out["logprobs_chunked_gb_per_step"] == pytest.approx(2 * chunk * 128256 * 4 / 1e9)


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
    assert variants == {"weighted_sum", "plain_k2", "fused_k2", "plain_k4", "fused_k4", "gram_k4"}
    assert {r["checkpointing"] for r in result["engine"]} == {False, True}
    for row in result["engine"] + result["logprobs"]:  # activation differences may be < 0 at this size
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))
    assert all(r["bytes_per_token"] >= 0 and r["seconds"] > 0 for r in result["engine"])
    assert len(result["logprobs"]) == 2 and "logprobs_full_copies" in result["llama3_8b"]
    assert len(result["slopes"]) == 12 and len(result["big_vocab"]) == 4 and len(result["depth"]) == 12
    assert {r["layers"] for r in result["depth"]} == {1}


def test_variants_run_measures_k8_beside_weighted_sum(tmp_path):
    """--variants: the engine and depth tables of those variants after weighted sum, and nothing else;
    k = 8 objectives get alternating signs (half agree with the first objective, half oppose it)."""
    assert mem.pair_batch(8, vocab=50, k=8)["signs"].tolist() == [[1.0, -1.0] * 4]
    assert [v[2] for v in mem.pick_variants("gram_k8,fused_k8")] == [2, 8, 8]
    with pytest.raises(SystemExit, match="unknown fused_k5"):
        mem.pick_variants("fused_k5")
    out = tmp_path / "memory.json"
    run = [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--quick", "--json", str(out)]
    subprocess.run([*run, "--variants", "fused_k8,gram_k8"], check=True, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["engine"][:3]] == ["weighted_sum", "fused_k8", "gram_k8"]
    assert len(result["engine"]) == 12 and len(result["depth"]) == 6 and len(result["per_layer"]) == 6
    assert "logprobs" not in result and "big_vocab" not in result
    grads = {r["variant"]: r["gradients_mib"] for r in result["engine"][:3]}  # k x, 1 x the parameters
    assert (
        grads["fused_k8"] == pytest.approx(8 * grads["weighted_sum"])
        and grads["gram_k8"] == grads["weighted_sum"]
    )
