"""Each loss against its formula written out by hand, log-prob extraction, tie handling, metrics."""

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

P1, P2, R1, R2, N1, N2 = -3.0, -5.0, -4.0, -4.5, 3.0, 5.0
DELTA = (P1 - P2) - (R1 - R2)  # 1.5
NORM = P1 / N1 - P2 / N2  # 0.0


def _pair() -> PairLogps:
    t = lambda v: torch.tensor([v, v], dtype=torch.float64)  # noqa: E731
    return PairLogps(t(P1), t(P2), t(R1), t(R2), t(N1), t(N2))


def _logsig(z: float) -> float:
    return -math.log1p(math.exp(-z))


HAND = {
    # (spec kwargs, loss for s = +1, loss for s = −1)
    "dpo": (dict(beta=0.2), -_logsig(0.2 * DELTA), -_logsig(-0.2 * DELTA)),
    "ipo": (dict(beta=0.5), (DELTA - 1.0) ** 2, (-DELTA - 1.0) ** 2),
    "hinge": (dict(beta=0.5), max(0.0, 1 - 0.5 * DELTA), max(0.0, 1 + 0.5 * DELTA)),
    "simpo": (dict(beta=2.0, gamma=0.3), -_logsig(2.0 * NORM - 0.3), -_logsig(-2.0 * NORM - 0.3)),
    "amopo": (dict(beta=2.0), -_logsig(2.0 * NORM), -_logsig(-2.0 * NORM)),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_loss_matches_hand_formula(name):
    kwargs, plus, minus = HAND[name]
    spec = ObjectiveSpec("o", loss=name, **kwargs)
    out = LOSSES[name](_pair(), torch.tensor([1.0, -1.0], dtype=torch.float64), spec)
    assert out.tolist() == pytest.approx([plus, minus], rel=1e-12)


def test_dpo_label_smoothing_is_conservative_dpo():
    spec = ObjectiveSpec("o", beta=0.2, label_smoothing=0.1)
    out = LOSSES["dpo"](_pair(), torch.tensor([1.0, 1.0], dtype=torch.float64), spec)
    z = 0.2 * DELTA
    assert out[0].item() == pytest.approx(-0.9 * _logsig(z) - 0.1 * _logsig(-z), rel=1e-12)


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
