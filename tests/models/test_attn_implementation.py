"""``model.attn_implementation``: the option reaches every loaded model, eager and sdpa give the same
log-probs, and a flash kernel whose package is missing is a ConfigError naming the option and package."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from raco.config import ConfigError, LoraConfig, ModelConfig, load_config
from raco.losses.logps import response_logps
from raco.models.loading import load_base_model, tiny_random_model
from raco.models.reference import frozen_copy

VOCAB = 49152  # tiny-random's (SmolLM2's tokenizer)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Two pairs of unequal lengths, right-padded (rows 0-1 = y¹, rows 2-3 = y²)."""
    g = torch.Generator().manual_seed(seed)
    rows = [(5, 4), (3, 7), (5, 2), (3, 6)]  # (prompt length, response length)
    width = max(p + r for p, r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response = torch.zeros_like(ids, dtype=torch.bool)
    for i, (p, r) in enumerate(rows):
        ids[i, : p + r] = torch.randint(1, VOCAB, (p + r,), generator=g)
        attention[i, : p + r] = 1
        response[i, p : p + r] = True
    return {"input_ids": ids, "attention_mask": attention, "response_mask": response}


@pytest.mark.parametrize("name", ["eager", "sdpa", None])
def test_tiny_random_honours_the_option(name):
    model = load_base_model(ModelConfig(attn_implementation=name), LoraConfig(), VOCAB)
    assert model.config._attn_implementation == (name or "sdpa")
    assert frozen_copy(model).model.config._attn_implementation == (name or "sdpa")


def test_default_is_sdpa_and_from_pretrained_receives_the_option(tmp_path):
    assert ModelConfig().attn_implementation == "sdpa"
    tiny_random_model(0, 256).save_pretrained(tmp_path)
    for name in ("eager", "sdpa"):
        model = load_base_model(ModelConfig(name=str(tmp_path), attn_implementation=name), LoraConfig(), 256)
        assert model.config._attn_implementation == name


def test_eager_and_sdpa_give_the_same_logps():
    batch = _batch()
    eager = tiny_random_model(1, VOCAB, attn_implementation="eager")
    sdpa = tiny_random_model(1, VOCAB, attn_implementation="sdpa")
    with torch.no_grad():
        want, _ = response_logps(eager, batch)
        got, _ = response_logps(sdpa, batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_unknown_value_and_none_on_the_command_line():
    with pytest.raises(ConfigError, match=r"model.attn_implementation: 'flash' is not sdpa, eager"):
        load_config(None, {"data.train": "x", "model.attn_implementation": "flash"})
    cfg = load_config(None, {"data.train": "x", "model.attn_implementation": "none"})
    assert cfg.model.attn_implementation is None


@pytest.mark.parametrize(
    ("name", "module", "package"),
    [
        ("flash_attention_2", "flash_attn", "flash-attn"),
        ("flash_attention_3", "flash_attn_interface", "flash-attn-3"),
    ],
)
def test_missing_flash_package_is_a_config_error_at_start(monkeypatch, name, module, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == module else real(m, *a))
    message = rf"model.attn_implementation: {name} needs the `{package}` package"
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"data.train": "x", "model.attn_implementation": name})
    with pytest.raises(ConfigError, match=message):  # the Python API, before transformers is asked
        load_base_model(ModelConfig(attn_implementation=name), LoraConfig(), VOCAB)
