"""benchmarks/packing.py (issue 14): the token and attention counts it reports, by hand on a small batch,
and its length profiles (medians as benchmarks/prompt_sharing.py's, lengths within their clips)."""

from __future__ import annotations

import torch

from .scripts import load_benchmark

bench = load_benchmark("packing")


def test_counts_by_hand():
    """Pairs (P, y¹, y²) = (3, 2, 5) and (1, 1, 1): rows of 5, 2, 8, 2 tokens, padded to 8.
    Tokens 4 · 8 = 32 padded, 17 packed; attention 4 · 64 = 256, 17² = 289, 25 + 4 + 64 + 4 = 97."""
    pairs = [
        {"row_index": 0, "prompt_ids": [1, 2, 3], "response_1_ids": [4, 5], "response_2_ids": [6] * 5},
        {"row_index": 1, "prompt_ids": [7], "response_1_ids": [8], "response_2_ids": [9]},
    ]
    for pair in pairs:
        pair["signs"] = [1.0]
    batches = bench.micro_batches(pairs, 2)
    assert len(batches) == 1 and batches[0]["input_ids"].shape == (4, 8)
    assert bench.token_counts(batches) == (32, 17)
    assert bench.attention_pairs(batches) == (256, 289, 97)


def test_profiles_draw_their_medians_within_their_clips():
    reddit, pku = bench.PROFILES
    assert (reddit.prompt.median, reddit.response.median) == (400, 40)
    assert (pku.prompt.median, pku.response.median) == (30, 150)
    for profile in bench.PROFILES:
        pairs = bench.draw_pairs(profile, 400, vocab=100)
        prompts = torch.tensor([len(p["prompt_ids"]) for p in pairs], dtype=torch.float64)
        responses = torch.tensor([len(p["response_1_ids"]) for p in pairs], dtype=torch.float64)
        assert prompts.min() >= profile.prompt.lo and prompts.max() <= profile.prompt.hi
        assert abs(prompts.median() / profile.prompt.median - 1) < 0.15
        assert abs(responses.median() / profile.response.median - 1) < 0.15
        assert prompts.std() > 0.2 * prompts.mean()  # the variance that makes padding
