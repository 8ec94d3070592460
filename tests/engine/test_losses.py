"""Each loss against its formula written out by hand, log-prob extraction, tie handling, metrics.

The hand-formula tests use pairs on which every term of every loss changes the answer. Mutations of
``raco.losses.pairwise`` they were checked (by monkeypatching ``LOSSES``) to catch, each in every loss it
applies to: β dropped; sign s flipped; SimPO γ dropped or with the wrong sign; length normalisation
dropped (π instead of π/n, simpo/amopo); ρ¹ ↔ ρ² swapped and reference dropped (dpo/ipo/hinge); IPO target
1/β instead of 1/(2β); hinge without the max(0, ·); cDPO weights ε ↔ 1−ε swapped; AMoPO applying γ.
"""

from __future__ import annotations

import math

import pytest
import torch
from engine_fixtures import make_batch, tiny_model

from raco.losses import (
    LOSSES,
    ObjectiveSpec,
    PairLogps,
    count_nonzero_signs,
    objective_losses,
    objective_metrics,
    response_logps,
    sequence_logps,
)

# Four pairs, both signs, unequal lengths, ρ¹ ≠ ρ², chosen so that every term of every loss changes the
# answer: the reference margin ρ¹ − ρ² is non-zero (and differs from π¹ − π²), π/n ≠ π (n ∉ {0, 1}), the
# normalised margin is non-zero and not ∝ Δ (row 2 has Δ < 0 but π¹/n¹ − π²/n² > 0), and two rows sit on
# the wrong side of the preference (sΔ < 0). Columns: π¹, π², ρ¹, ρ², n¹, n², s.
ROWS = (
    (-3.0, -8.0, -4.0, -6.5, 2.0, 4.0, +1.0),
    (-6.0, -4.0, -5.0, -4.5, 3.0, 5.0, -1.0),
    (-9.0, -5.0, -7.0, -6.0, 6.0, 2.0, +1.0),
    (-2.0, -7.0, -3.5, -5.0, 4.0, 7.0, -1.0),
)
# By hand, per row:
#   Δ = (π¹ − π²) − (ρ¹ − ρ²):  5 − 2.5 = 2.5 | −2 + 0.5 = −1.5 | −4 + 1 = −3 | 5 − 1.5 = 3.5
#   M = π¹/n¹ − π²/n²:          −1.5 + 2 = 0.5 | −2 + 0.8 = −1.2 | −1.5 + 2.5 = 1 | −0.5 + 1 = 0.5
SD = (2.5, 1.5, -3.0, -3.5)  # s·Δ
SM = (0.5, 1.2, 1.0, -0.5)  # s·M


def _pair() -> PairLogps:
    col = lambda j: torch.tensor([r[j] for r in ROWS], dtype=torch.float64)  # noqa: E731
    return PairLogps(col(0), col(1), col(2), col(3), col(4), col(5))


def _signs() -> torch.Tensor:
    return torch.tensor([r[6] for r in ROWS], dtype=torch.float64)


def _logsig(z: float) -> float:
    return -math.log1p(math.exp(-z))


def _nls(z: float) -> float:
    """−log σ(z)."""
    return math.log1p(math.exp(-z))


HAND = {
    # case: (loss, spec kwargs, per-row loss written out by hand)
    # −log σ(0.3 sΔ)
    "dpo": ("dpo", dict(beta=0.3), [_nls(0.75), _nls(0.45), _nls(-0.9), _nls(-1.05)]),
    # cDPO, ε = 0.15: −0.85 log σ(0.3 sΔ) − 0.15 log σ(−0.3 sΔ)
    "dpo_smoothed": (
        "dpo",
        dict(beta=0.3, label_smoothing=0.15),
        [0.85 * _nls(z) + 0.15 * _nls(-z) for z in (0.75, 0.45, -0.9, -1.05)],
    ),
    # (sΔ − 1/(2·0.4))² = (sΔ − 1.25)²
    "ipo": ("ipo", dict(beta=0.4), [1.25**2, 0.25**2, 4.25**2, 4.75**2]),
    # max(0, 1 − 0.5 sΔ): row 0 on the inactive side (1 − 1.25 < 0), rows 1–3 active
    "hinge": ("hinge", dict(beta=0.5), [0.0, 0.25, 2.5, 2.75]),
    # −log σ(2.5 sM − 0.4)
    "simpo": ("simpo", dict(beta=2.5, gamma=0.4), [_nls(0.85), _nls(2.6), _nls(2.1), _nls(-1.65)]),
    # −log σ(1.5 sM): γ is SimPO's and must be ignored by AMoPO even when set
    "amopo": ("amopo", dict(beta=1.5, gamma=0.4), [_nls(0.75), _nls(1.8), _nls(1.5), _nls(-0.75)]),
}


def test_hand_margins_match_the_rows():
    for (p1, p2, r1, r2, n1, n2, s), sd, sm in zip(ROWS, SD, SM, strict=True):
        assert s * ((p1 - p2) - (r1 - r2)) == pytest.approx(sd, rel=1e-12)
        assert s * (p1 / n1 - p2 / n2) == pytest.approx(sm, rel=1e-12)
    # every term matters: ρ¹ ≠ ρ², n ∉ {0, 1} and n¹ ≠ n², non-zero margins of both signs, distinct rows
    assert all(r[2] != r[3] and r[4] != r[5] and min(r[4], r[5]) > 1 for r in ROWS)
    assert len(set(SD)) == len(SD) and min(SD) < 0 < max(SD)
    assert len(set(SM)) == len(SM) and min(SM) < 0 < max(SM)


@pytest.mark.parametrize("case", sorted(HAND))
def test_loss_matches_hand_formula(case):
    name, kwargs, want = HAND[case]
    spec = ObjectiveSpec("o", loss=name, **kwargs)
    out = LOSSES[name](_pair(), _signs(), spec)
    assert out.tolist() == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert len(set(want)) == len(want)  # the rows are not one value repeated


def test_reference_free_losses_ignore_the_reference():
    p = _pair()
    no_ref = PairLogps(p.policy_1, p.policy_2, None, None, p.length_1, p.length_2)
    for case in ("simpo", "amopo"):
        name, kwargs, want = HAND[case]
        out = LOSSES[name](no_ref, _signs(), ObjectiveSpec("o", loss=name, **kwargs))
        assert out.tolist() == pytest.approx(want, rel=1e-12)


def test_spec_validation():
    with pytest.raises(ValueError, match="unknown loss"):
        ObjectiveSpec("o", loss="kto")
    with pytest.raises(ValueError, match="beta"):
        ObjectiveSpec("o", beta=0)
    assert not ObjectiveSpec("o", loss="simpo").needs_reference
    assert ObjectiveSpec("o", loss="ipo").needs_reference


def test_objective_losses_skip_ties_and_normalise_by_global_counts():
    g = torch.Generator().manual_seed(0)
    p1, p2, r1, r2 = (torch.randn(4, generator=g, dtype=torch.float64) for _ in range(4))
    pair = PairLogps(p1, p2, r1, r2, torch.ones(4), torch.ones(4))
    signs = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    spec = ObjectiveSpec("o", beta=0.1)
    counts = torch.tensor([6.0, 0.0])  # e.g. 3 more non-zero rows in other micro-batches
    losses = objective_losses(pair, signs, [spec, spec], counts)
    delta = (p1 - p2) - (r1 - r2)
    expected = sum(-_logsig(0.1 * s * d.item()) for s, d in zip([1, -1, 0, 1], delta, strict=True) if s) / 6
    assert losses[0].item() == pytest.approx(expected, rel=1e-12)
    assert losses[1].item() == 0.0  # objective absent from the batch: loss 0 (and gradient 0)
    assert count_nonzero_signs(signs).tolist() == [3.0, 0.0]


def test_sequence_logps_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    logps, lengths = sequence_logps(logits, ids, mask)
    for r in range(2):
        want = sum(
            torch.log_softmax(logits[r, t - 1], -1)[ids[r, t]].item() for t in range(1, 5) if mask[r, t]
        )
        assert logps[r].item() == pytest.approx(want, rel=1e-5)
    assert lengths.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("arch", ["llama", "qwen"])
def test_response_logps_equals_full_logits(arch):
    model = tiny_model(arch, tie=arch == "qwen")
    batch = make_batch(3, 1, seed=2)
    with torch.no_grad():
        fast, n_fast = response_logps(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        full, n_full = sequence_logps(logits, batch["input_ids"], batch["response_mask"])
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    assert torch.equal(n_fast, n_full)


def test_metrics_use_the_preferred_response_as_chosen():
    pair = PairLogps(
        torch.tensor([-1.0, -1.0, -1.0]),
        torch.tensor([-2.0, -2.0, -2.0]),
        torch.zeros(3),
        torch.zeros(3),
        torch.ones(3),
        torch.ones(3),
    )
    signs = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [0.0, 1.0]])
    specs = [ObjectiveSpec("a", beta=0.5), ObjectiveSpec("b", beta=0.5)]
    m = objective_metrics(pair, signs, specs)
    # objective a: row 0 chosen = y¹ (reward −0.5), row 1 chosen = y² (−1.0); row 2 is a tie
    assert m["a/rewards/chosen"] == pytest.approx(-0.75)
    assert m["a/rewards/rejected"] == pytest.approx(-0.75)
    assert m["a/rewards/margins"] == pytest.approx(0.0)
    assert m["a/rewards/accuracies"] == pytest.approx(0.5)
    assert m["b/rewards/accuracies"] == pytest.approx(1.0)
    assert m["b/rewards/margins"] == pytest.approx(0.5)
