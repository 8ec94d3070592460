"""Batched generation: the same seed gives the same responses at any batch size, left padding changes
nothing, the chat template is applied when present, and the bundled SmolLM2 answers."""

from __future__ import annotations

import pytest
import torch

from raco.eval.generate import (
    GenerationConfig,
    GenerationError,
    decode_response,
    encode_prompts,
    generate,
    make_backend,
)

PROMPTS = [
    "Say something about the sea.",
    "Hi",
    "Say something about a book, the weather and dinner in a quiet garden.",
    "music",
    "Say something about your day.",
]
SAMPLE = GenerationConfig(
    max_new_tokens=12, do_sample=True, temperature=0.9, top_p=0.95, seed=3, batch_size=5
)
GREEDY = GenerationConfig(max_new_tokens=12, batch_size=5)


def _with(config: GenerationConfig, **changes) -> GenerationConfig:
    from dataclasses import replace

    return replace(config, **changes)


def test_same_seed_same_responses_other_seed_other_responses(tiny_llama, bpe_tokenizer):
    first = generate(tiny_llama, bpe_tokenizer, PROMPTS, SAMPLE, progress=False)
    again = generate(tiny_llama, bpe_tokenizer, PROMPTS, SAMPLE, progress=False)
    other = generate(tiny_llama, bpe_tokenizer, PROMPTS, _with(SAMPLE, seed=4), progress=False)
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))  # 12 sampled tokens each
    assert len(set(first)) == len(first) and all(first)


def test_sampling_does_not_depend_on_the_batch_size(tiny_llama, bpe_tokenizer):
    batched = generate(tiny_llama, bpe_tokenizer, PROMPTS, SAMPLE, progress=False)
    for size in (1, 2):
        assert generate(
            tiny_llama, bpe_tokenizer, PROMPTS, _with(SAMPLE, batch_size=size), progress=False
        ) == (batched)


def test_greedy_batched_with_left_padding_equals_one_by_one(tiny_llama, bpe_tokenizer):
    batched = generate(tiny_llama, bpe_tokenizer, PROMPTS, GREEDY, progress=False)
    alone = [generate(tiny_llama, bpe_tokenizer, [p], GREEDY, progress=False)[0] for p in PROMPTS]
    assert batched == alone


def test_a_response_is_the_new_tokens_of_model_generate(tiny_llama, bpe_tokenizer):
    ids = bpe_tokenizer(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        out = tiny_llama.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    expected = bpe_tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert generate(tiny_llama, bpe_tokenizer, PROMPTS[:1], GREEDY, progress=False) == [expected]


def test_generation_leaves_the_global_rng_and_the_training_mode_alone(tiny_llama, bpe_tokenizer):
    state = torch.get_rng_state()
    tiny_llama.train()
    try:
        generate(tiny_llama, bpe_tokenizer, PROMPTS[:2], SAMPLE, progress=False)
        assert tiny_llama.training and torch.equal(torch.get_rng_state(), state)
    finally:
        tiny_llama.eval()


def test_the_chat_template_is_applied_when_the_tokenizer_has_one(tiny_llama, bpe_tokenizer, chat_tokenizer):
    rendered = [f"<bos>user: {p}\nassistant:" for p in PROMPTS]
    ids = encode_prompts(chat_tokenizer, PROMPTS[:1], chat_template=None)
    assert ids == [bpe_tokenizer(rendered[0])["input_ids"]] and ids[0][0] == bpe_tokenizer.bos_token_id
    via_template = generate(tiny_llama, chat_tokenizer, PROMPTS, SAMPLE, progress=False)
    by_hand = generate(tiny_llama, bpe_tokenizer, rendered, SAMPLE, progress=False)
    plain = generate(tiny_llama, chat_tokenizer, PROMPTS, _with(SAMPLE, chat_template=False), progress=False)
    assert via_template == by_hand and plain == generate(
        tiny_llama, bpe_tokenizer, PROMPTS, SAMPLE, progress=False
    )
    assert via_template != plain
    messages = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]]
    assert encode_prompts(chat_tokenizer, messages, None) == [
        bpe_tokenizer("<bos>system: Be brief.\n<bos>user: Hi\nassistant:")["input_ids"]
    ]


def test_chat_input_without_a_chat_template_is_an_error(bpe_tokenizer):
    with pytest.raises(GenerationError, match="chat_template: true, but the tokenizer has no chat template"):
        encode_prompts(bpe_tokenizer, ["Hi"], chat_template=True)
    with pytest.raises(GenerationError, match="list of chat messages but the tokenizer has no chat template"):
        encode_prompts(bpe_tokenizer, [[{"role": "user", "content": "Hi"}]], chat_template=None)


def test_a_response_ends_before_its_first_end_token(bpe_tokenizer):
    eos, hello = bpe_tokenizer.eos_token_id, bpe_tokenizer("apple river")["input_ids"]
    assert decode_response(bpe_tokenizer, [*hello, eos, *hello], [eos]) == "apple river"
    assert decode_response(bpe_tokenizer, [*hello, bpe_tokenizer.pad_token_id], []) == "apple river"


def test_the_progress_bar_counts_prompts(tiny_llama, bpe_tokenizer, capsys):
    generate(tiny_llama, bpe_tokenizer, PROMPTS[:2], _with(GREEDY, max_new_tokens=2, batch_size=1))
    err = capsys.readouterr().err
    assert "generate" in err and "2/2" in err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_new_tokens": 0}, "generation.max_new_tokens: must be at least 1, got 0"),
        (
            {"temperature": 0.0},
            "generation.temperature: must be > 0 (for greedy decoding set do_sample: false)",
        ),
        ({"top_p": 1.5}, "generation.top_p: must be in (0, 1], got 1.5"),
        ({"batch_size": 0}, "generation.batch_size: must be at least 1"),
        ({"backend": "vlm"}, "generation.backend: must be transformers or vllm, got 'vlm'"),
    ],
)
def test_bad_generation_settings_are_named(changes, message):
    with pytest.raises(GenerationError) as err:
        GenerationConfig(**changes)
    assert message in str(err.value)


def test_backends(tiny_llama, bpe_tokenizer):
    backend = make_backend("transformers", model=tiny_llama, tokenizer=bpe_tokenizer)
    assert backend.generate(PROMPTS[:2], GREEDY, progress=False) == generate(
        tiny_llama, bpe_tokenizer, PROMPTS[:2], GREEDY, progress=False
    )
    import importlib.util

    if importlib.util.find_spec("vllm") is None:  # absent on CPU machines: asking for it is a clear error
        with pytest.raises(GenerationError, match="vllm is not installed"):
            make_backend("vllm", model="some/model", tokenizer=bpe_tokenizer)
    with pytest.raises(GenerationError, match="'hf' is not one of transformers, vllm"):
        make_backend("hf", model=tiny_llama, tokenizer=bpe_tokenizer)


# ----------------------------------------------------------------------------- the bundled SmolLM2


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM

    from raco.models.loading import smollm2_model_dir
    from raco.models.offline import smollm2_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_model_dir()), dtype=torch.float32).eval()
    return model, smollm2_tokenizer()


def test_smollm2_answers_through_its_chat_template(smollm2):
    model, tokenizer = smollm2
    prompts = ["What is the capital of France?", "Say hello."]
    config = GenerationConfig(max_new_tokens=8, batch_size=2)
    answers = generate(model, tokenizer, prompts, config, progress=False)
    assert "Paris" in answers[0] and "<|im" not in answers[0] and "France?" not in answers[0]
    assert generate(model, tokenizer, prompts[:1], config, progress=False) == answers[:1]
