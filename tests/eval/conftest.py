"""Fixtures for the eval tests: a locally trained byte-level BPE tokenizer (the toy task's words) and
raco's own tiny random Llama (``raco.models.loading.tiny_random_model``) over its vocabulary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from toy_data import toy_rows

CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A 400-token byte-level BPE trained on the toy task's text (no chat template, pad/eos/bos special)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [" ".join((r["prompt"], r["response_1"], r["response_2"])) for r in toy_rows(200, seed=0)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<eos>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )


@pytest.fixture(scope="session")
def chat_tokenizer(bpe_tokenizer):
    """The same tokenizer with a small chat template (``<bos>role: content`` lines, ``assistant:``)."""
    import copy

    tok = copy.deepcopy(bpe_tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def tiny_llama(bpe_tokenizer):
    """raco's tiny-random Llama (2 layers, hidden 64) over the BPE vocabulary, seed 0, eval mode."""
    from raco.models.loading import tiny_random_model

    return tiny_random_model(seed=0, vocab_size=len(bpe_tokenizer)).eval()
