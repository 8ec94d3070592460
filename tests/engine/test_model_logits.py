"""Log-probs are the model's own: ``response_logps`` equals ``log_softmax(model(...).logits)`` gathered
at the response tokens, for every family in the zoo — including those whose forward soft-caps or scales
the LM head's output (Gemma-2/3, Cohere, Granite, HyperCLOVAX). The reference here is the model's
plain forward and a log-softmax written in the test, not raco's extraction code."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import make_batch
from model_zoo import FAMILIES, family_model

from raco.losses import response_logps


def _by_hand(model, batch) -> torch.Tensor:
    """Σ_t m[r, t] · log softmax(model(...).logits[r, t−1])[ids[r, t]], one token at a time."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    out = torch.zeros(logits.shape[0], dtype=torch.float64)
    for r, t in batch["response_mask"].nonzero().tolist():
        out[r] += torch.log_softmax(logits[r, t - 1].double(), -1)[batch["input_ids"][r, t]]
    return out


def _head_only(model, batch) -> torch.Tensor:
    """What a head-only extraction gives (backbone → LM head, no logit processing): the old bug."""
    inner = getattr(model, model.base_model_prefix)
    with torch.no_grad():
        hidden = inner(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = model.get_output_embeddings()(hidden)
    out = torch.zeros(logits.shape[0], dtype=torch.float64)
    for r, t in batch["response_mask"].nonzero().tolist():
        out[r] += torch.log_softmax(logits[r, t - 1].double(), -1)[batch["input_ids"][r, t]]
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_response_logps_are_the_models_own(family):
    model = family_model(family).eval()
    batch = make_batch(3, 1, seed=2)
    with torch.no_grad():
        got, lengths = response_logps(model, batch)
    want = _by_hand(model, batch)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    assert lengths.tolist() == batch["response_mask"].sum(1).float().tolist()
    transforms = FAMILIES[family][1]
    differs = not torch.allclose(_head_only(model, batch), want, rtol=1e-3, atol=1e-2)
    assert differs == transforms  # the zoo's transforms are large enough for this test to see them


def test_models_without_logits_to_keep_use_full_logits():
    """A forward that does not take ``logits_to_keep`` is indexed after the fact (same numbers)."""
    from torch import nn

    base = family_model("llama").eval()

    class NoKeep(nn.Module):
        base_model_prefix = "inner"

        def __init__(self) -> None:
            super().__init__()
            self.inner = base

        def forward(self, input_ids, attention_mask, use_cache=False):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

    batch = make_batch(2, 1, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(
            response_logps(NoKeep(), batch)[0].double(), _by_hand(base, batch), rtol=1e-5, atol=1e-4
        )
