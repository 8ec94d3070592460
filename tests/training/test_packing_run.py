"""``data.packing`` end to end (issue 14): a run on packed micro-batches logs the numbers and trains the
weights of the same run on padded ones (full fine-tuning with a frozen-copy reference, LoRA with the
adapter-disabled one; two micro-batches per step), and an attention that lets packed rows see each other
stops the run on its first micro-batch with a ConfigError naming it."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from raco.config import ConfigError, from_dict
from raco.training.checkpoint import latest_checkpoint
from raco.training.loop import train
from raco.training.metrics import read_metrics
from raco.training.session import setup

LR = 3e-3  # tiny_tree's train.lr
COMPARED = (
    "loss",
    "friendly/loss",
    "concise/loss",
    "friendly/coef",
    "concise/coef",
    "grad_norm",
    "pareto_measure",
    "tokens",
)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_packed_run_equals_the_padded_run(tiny_config, lora):
    runs = {}
    for packing in (False, True):
        tree = tiny_config(
            **{
                "data.packing": packing,
                "train.grad_accum": 2,
                "train.batch_size": 4,
                "train.max_steps": 3,
                "lora.enabled": lora,
                "model.reference": "adapter" if lora else "copy",
            }
        )
        tree["output_dir"] += f"-{packing}"
        runs[packing] = train(tree)
    logs = {
        packing: [r for r in read_metrics(result.run_dir) if "friendly/loss" in r]
        for packing, result in runs.items()
    }
    assert [r["step"] for r in logs[True]] == [1, 2, 3]
    for want, got in zip(logs[False], logs[True], strict=True):
        for key in COMPARED:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), (got["step"], key)
    weights = {
        packing: load_file(str(latest_checkpoint(result.run_dir) / "trainable.safetensors"))
        for packing, result in runs.items()
    }
    for name, tensor in weights[False].items():
        # Adam's first steps are ±lr per entry whatever the gradient's size: 1 % of lr (as the gram store's)
        torch.testing.assert_close(weights[True][name], tensor, rtol=0, atol=0.01 * LR, msg=name)


def _mixing_sdpa(module, query, key, value, attention_mask, **kwargs):
    """sdpa over the whole sequence with a plain causal mask: packed rows attend to each other."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)


def test_a_run_whose_attention_mixes_packed_rows_stops_with_a_config_error(tiny_config, monkeypatch):
    from transformers import AttentionInterface

    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", _mixing_sdpa)
    tree = tiny_config(**{"data.packing": True, "train.max_steps": 1})
    with pytest.raises(ConfigError) as err:
        train(tree)
    message = str(err.value)
    assert "data.packing" in message and "attn_implementation 'sdpa'" in message
    assert "log-probs of a packed micro-batch differ from those of the same rows padded" in message


def test_packing_is_refused_with_a_shared_prompt(tiny_config):
    with pytest.raises(ConfigError, match=r"data\.packing: not with model\.share_prompt"):
        setup(from_dict(tiny_config(**{"data.packing": True, "model.share_prompt": True})))


def test_packing_with_a_dense_mask_attention_is_noted(tiny_config):
    from raco.config import config_notes

    notes = config_notes(from_dict(tiny_config(**{"data.packing": True})))
    assert any("data.packing with model.attn_implementation sdpa" in n and "N × N" in n for n in notes)
    assert not any("data.packing" in n for n in config_notes(from_dict(tiny_config())))
