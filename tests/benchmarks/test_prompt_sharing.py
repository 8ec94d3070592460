"""benchmarks/prompt_sharing.py (issue 14): the tokens-per-pair arithmetic by hand and the batches it
times (the collator's layout, each profile's lengths)."""

from __future__ import annotations

import pytest

from .scripts import load_benchmark

bench = load_benchmark("prompt_sharing")


def test_tokens_per_pair_by_hand():
    """Reddit-like: 2·400 + 38 + 42 = 880 without, 400 + 80 = 480 with (1.83×, 400/880 = 45.5% saved);
    PKU-like: 2·30 + 300 = 360 without, 330 with (30/360 = 8.3% saved)."""
    reddit, pku = bench.PROFILES
    assert bench.tokens_per_pair(reddit) == (880, 480)
    assert bench.saved_fraction(reddit) == pytest.approx(400 / 880)
    assert bench.tokens_per_pair(pku) == (360, 330)
    assert bench.saved_fraction(pku) == pytest.approx(30 / 360)
    assert bench.tokens_per_pair(bench.Profile("x", 5, 0, 0)) == (10, 5)


def test_profiles_are_the_issues_shapes():
    """The prompt ~90% of a Reddit-like row, ~15% of a PKU-like one."""
    reddit, pku = bench.PROFILES
    assert reddit.prompt / (reddit.prompt + reddit.response_1) > 0.9
    assert pku.prompt / (pku.prompt + pku.response_1) < 0.2


def test_pair_batch_has_the_profiles_lengths():
    profile = bench.Profile("small", 6, 3, 4)
    batch = bench.pair_batch(profile, pairs=2)
    assert batch["input_ids"].shape == (4, 10)
    assert batch["response_mask"].sum(1).tolist() == [3, 3, 4, 4]
    assert batch["attention_mask"].sum(1).tolist() == [9, 9, 10, 10]
    assert (batch["input_ids"][:2, :6] == batch["input_ids"][2:, :6]).all()  # one prompt per pair
