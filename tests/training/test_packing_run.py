"""``data.packing`` end to end (issue 14): a run on packed micro-batches logs the numbers and trains the
weights of the same run on padded ones (full fine-tuning with a frozen-copy reference, LoRA with the
adapter-disabled one; two micro-batches per step), and an attention that lets packed rows see each other
stops the run on its first micro-batch with a ConfigError naming it."""

from __future__ import annotations

import pytest
from run_compare import assert_same_run

from raco.config import ConfigError, from_dict
from raco.training.loop import train
from raco.training.session import setup


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
    lr = tree["train"]["lr"]
    assert_same_run(runs[False].run_dir, runs[True].run_dir, steps=3, extra=("tokens",), lr=lr)


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
