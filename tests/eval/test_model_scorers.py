"""The model-backed scorers: MiniLM relevance on hand-checked sentences, and sequence-classification
models whose scores must equal their own forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from raco.eval.scorers import BadScore, ScorerError, make_scorer

QUESTION = "How do I bake bread?"
RECIPE = "Mix flour, water, yeast and salt, knead, let it rise, then bake at 220C for 30 minutes."
REFUSAL = "I refuse to answer."


# ----------------------------------------------------------------------------- relevance (MiniLM)


@pytest.fixture(scope="module")
def relevance():
    return make_scorer("relevance")


def test_relevance_of_a_matching_and_an_unrelated_answer(relevance):
    # measured with all-MiniLM-L6-v2 (OFFLINE.md: recipe ~0.645, refusal 0.030)
    scores = relevance.run([QUESTION, QUESTION], [RECIPE, REFUSAL])
    assert scores.values == pytest.approx([0.648, 0.030], abs=0.005) and not scores.bad


def test_relevance_is_the_cosine_of_the_models_own_embeddings(relevance):
    import numpy as np

    embeddings = relevance.model.encode([RECIPE, QUESTION, REFUSAL])
    a, b = embeddings[0], embeddings[1:]
    expected = (b @ a) / (np.linalg.norm(b, axis=1) * np.linalg.norm(a))
    scores = relevance.run(["x", "y"], [RECIPE, RECIPE], references=[QUESTION, REFUSAL])  # to=prompt
    assert scores.values != pytest.approx(expected.tolist(), abs=1e-3)  # prompts x, y were compared
    to_reference = make_scorer("relevance:to=reference")
    assert to_reference.model is relevance.model  # loaded once per process
    scores = to_reference.run(["x", "y"], [RECIPE, RECIPE], references=[QUESTION, REFUSAL])
    assert scores.values == pytest.approx(expected.tolist(), abs=1e-5)


def test_relevance_to_a_missing_reference_is_a_bad_row(relevance):
    scores = make_scorer("relevance:to=reference").run(["q", "q"], [RECIPE, RECIPE], [QUESTION, None])
    assert scores.bad == (BadScore(1, "no reference answer"),) and math.isnan(scores.values[1])
    assert scores.values[0] == pytest.approx(0.648, abs=0.005)
    with pytest.raises(ScorerError, match="compares with a reference answer"):
        make_scorer("relevance:to=reference").run(["q"], [RECIPE])


def test_an_unloadable_sentence_model_is_a_scorer_error(tmp_path):
    with pytest.raises(ScorerError, match=r"scorer relevance: cannot load model '.*nowhere'"):
        make_scorer(f"relevance:model={tmp_path / 'nowhere'}")


# ----------------------------------------------------------------------------- classifier


def _save_classifier(folder, tokenizer, arch: str, num_labels: int, id2label=None) -> str:
    from transformers import (
        GPT2Config,
        GPT2ForSequenceClassification,
        LlamaConfig,
        LlamaForSequenceClassification,
    )

    torch.manual_seed(0)
    labels = {"num_labels": num_labels, **({"id2label": id2label} if id2label else {})}
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            **labels,
        )
        model = LlamaForSequenceClassification(config)
    else:  # GPT-2 without a pad token: the scorer pads with eos
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, **labels)
        model = GPT2ForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def llama_classifier(tmp_path_factory, bpe_tokenizer):
    """A random 2-label Llama classifier (labels unsafe, safe) with the BPE tokenizer, on disk."""
    return _save_classifier(
        tmp_path_factory.mktemp("llama-cls"), bpe_tokenizer, "llama", 2, {0: "unsafe", 1: "safe"}
    )


@pytest.fixture(scope="module")
def gpt2_reward(tmp_path_factory, bpe_tokenizer):
    """A random one-logit GPT-2 reward model whose tokenizer has no pad token, on disk."""
    import copy

    tokenizer = copy.deepcopy(bpe_tokenizer)
    tokenizer.pad_token = None
    return _save_classifier(tmp_path_factory.mktemp("gpt2-rm"), tokenizer, "gpt2", 1)


PAIR_PROMPTS = ["Say something about the sea.", "Hi", "Say something about a book."]
PAIR_RESPONSES = ["apple river stone thanks", "cloud", "green quiet bright table window garden music"]


def _own_forward(folder: str, pair: bool) -> torch.Tensor:
    """Each row alone (no padding) through the saved model: logits [rows, labels]."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    rows = []
    with torch.no_grad():
        for prompt, response in zip(PAIR_PROMPTS, PAIR_RESPONSES, strict=True):
            texts = (prompt, response) if pair else (response,)
            rows.append(model(**tokenizer(*texts, return_tensors="pt")).logits[0])
    return torch.stack(rows)


def test_classifier_label_logit_equals_the_models_own_forward(llama_classifier):
    logits = _own_forward(llama_classifier, pair=True)
    for label in ("1", "safe", "SAFE"):
        scorer = make_scorer({"name": "classifier", "model": llama_classifier, "label": label})
        scores = scorer.run(PAIR_PROMPTS, PAIR_RESPONSES)  # one padded batch of 3
        assert scores.values == pytest.approx(logits[:, 1].tolist(), abs=1e-5)
    unsafe = make_scorer(f"classifier:model={llama_classifier},label=unsafe,batch_size=2")
    assert unsafe.run(PAIR_PROMPTS, PAIR_RESPONSES).values == pytest.approx(logits[:, 0].tolist(), abs=1e-5)


def test_classifier_probability_and_text_input(llama_classifier):
    probs = _own_forward(llama_classifier, pair=False).softmax(-1)
    scorer = make_scorer(f"classifier:model={llama_classifier},label=safe,output=probability,input=text")
    assert scorer.run(PAIR_PROMPTS, PAIR_RESPONSES).values == pytest.approx(probs[:, 1].tolist(), abs=1e-6)


def test_one_logit_reward_model_without_a_pad_token(gpt2_reward):
    logits = _own_forward(gpt2_reward, pair=True)[:, 0]
    scores = make_scorer(f"classifier:model={gpt2_reward}").run(PAIR_PROMPTS, PAIR_RESPONSES)
    assert scores.values == pytest.approx(logits.tolist(), abs=1e-5)
    sigmoid = make_scorer(f"classifier:model={gpt2_reward},output=probability").run(
        PAIR_PROMPTS, PAIR_RESPONSES
    )
    assert sigmoid.values == pytest.approx(logits.sigmoid().tolist(), abs=1e-6)


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("2", "label 2 does not fit the head: model '{m}' has 2 labels (0: unsafe, 1: safe)"),
        ("-1", "label -1 does not fit the head"),
        (
            "safee",
            "no label named 'safee': model '{m}' has 2 labels (0: unsafe, 1: safe); did you mean `safe`?",
        ),
        ("", "model '{m}' has 2 labels (0: unsafe, 1: safe); choose one with label=INDEX or label=NAME"),
    ],
)
def test_a_label_that_does_not_fit_the_head_is_a_clear_error(llama_classifier, label, message):
    with pytest.raises(ScorerError) as err:
        make_scorer({"name": "classifier", "model": llama_classifier, "label": label})
    assert message.format(m=llama_classifier) in str(err.value)


def test_a_missing_classifier_folder_is_a_scorer_error(tmp_path):
    with pytest.raises(ScorerError, match=r"scorer classifier: cannot load '.*missing'"):
        make_scorer(f"classifier:model={tmp_path / 'missing'}")
