"""Token ids of pairs on real tokenizers: plain concatenation, chat template, truncation."""

from __future__ import annotations

import copy

import pytest

from raco.data import DataError, PreferenceRow, tokenize_dataset, tokenize_row

EOS = 50256
SKY = PreferenceRow("The sky is", " blue.", " green.", (1, -1), "test", 7)
SUN = PreferenceRow("The sun is", " very bright indeed.", " cold.", (0, 1), "test", 8)
QUESTION = [{"role": "user", "content": "What color is the sky?"}]


def test_plain_text_concatenation_appends_eos(gpt2):
    pair = tokenize_row(SKY, gpt2)
    assert pair == {
        "prompt_ids": [464, 6766, 318],
        "response_1_ids": [4171, 13, EOS],
        "response_2_ids": [4077, 13, EOS],
        "signs": [1, -1],
        "row_index": 7,
        "prompt_truncated": False,
        "response_truncated": False,
    }


def test_prompt_keeps_its_end(gpt2):
    pair = tokenize_row(SKY, gpt2, max_prompt_length=2)
    assert pair["prompt_ids"] == [6766, 318]
    assert pair["prompt_truncated"] and not pair["response_truncated"]


def test_responses_keep_their_start(gpt2):
    pair = tokenize_row(SUN, gpt2, max_length=6)
    assert pair["prompt_ids"] == [464, 4252, 318]
    assert pair["response_1_ids"] == [845, 6016, 5600]
    assert pair["response_2_ids"] == [4692, 13, EOS]
    assert pair["response_truncated"] and not pair["prompt_truncated"]


def test_prompt_leaves_room_for_one_response_token(gpt2):
    pair = tokenize_row(SUN, gpt2, max_length=3)
    assert pair["prompt_ids"] == [4252, 318]
    assert pair["response_1_ids"] == [845] and pair["response_2_ids"] == [4692]
    assert pair["prompt_truncated"] and pair["response_truncated"]


def test_truncation_counts(gpt2):
    pairs, stats = tokenize_dataset([SKY, SUN], gpt2, max_length=6, max_prompt_length=2)
    assert stats.as_dict() == {"rows": 2, "prompt_truncated": 2, "response_truncated": 1}
    assert all(
        len(p["prompt_ids"]) + max(len(p["response_1_ids"]), len(p["response_2_ids"])) <= 6 for p in pairs
    )


def test_bad_lengths(gpt2):
    with pytest.raises(ValueError, match="max_length"):
        tokenize_row(SKY, gpt2, max_length=1)
    with pytest.raises(ValueError, match="max_prompt_length"):
        tokenize_row(SKY, gpt2, max_prompt_length=0)


def test_chat_template_response_is_the_extra_tokens(smollm2):
    row = PreferenceRow(QUESTION, [{"role": "assistant", "content": "It is blue."}], "It is green.", (1,))
    pair = tokenize_row(row, smollm2)
    prompt = smollm2.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert pair["prompt_ids"] == list(prompt)
    assert pair["prompt_ids"][:3] == [1, 9690, 198]  # <|im_start|>system\n: SmolLM2's default system turn
    assert pair["prompt_ids"][-4:] == [1, 520, 9531, 198]  # <|im_start|>assistant\n
    blue = smollm2("It is blue.", add_special_tokens=False)["input_ids"]
    assert pair["response_1_ids"] == [*blue, 2]  # ends with <|im_end|>; the template's "\n" is dropped
    assert pair["response_2_ids"] == [*smollm2("It is green.", add_special_tokens=False)["input_ids"], 2]


def test_chat_prompt_truncation_keeps_bos(smollm2):
    row = PreferenceRow(QUESTION, "It is blue.", "It is green.", (1,))
    pair = tokenize_row(row, smollm2, max_prompt_length=5)
    assert pair["prompt_ids"] == [1, 1, 520, 9531, 198]
    assert pair["prompt_truncated"]


def test_text_prompt_with_message_responses_uses_the_template(smollm2):
    row = PreferenceRow("What color is the sky?", [{"role": "assistant", "content": "Blue."}], "Green.", (1,))
    with_messages = PreferenceRow(QUESTION, "Blue.", "Green.", (1,))
    assert tokenize_row(row, smollm2) == tokenize_row(with_messages, smollm2)


def test_messages_need_a_chat_template(gpt2):
    row = PreferenceRow(QUESTION, "Blue.", "Green.", (1,), source="f.jsonl:3")
    with pytest.raises(DataError, match=r"f.jsonl:3, field 'tokenizer': .*no chat template"):
        tokenize_row(row, gpt2)


def test_template_breaking_the_prefix_property_is_an_error(gpt2):
    tokenizer = copy.deepcopy(gpt2)
    tokenizer.chat_template = (
        "{{ messages | length }}{% for m in messages %} {{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %} >{% endif %}"
    )
    row = PreferenceRow(QUESTION, "Blue.", "Green.", (1,), source="f.jsonl:1")
    with pytest.raises(DataError, match="not a prefix of the full conversation") as info:
        tokenize_row(row, tokenizer)
    assert info.value.field == "response_1"


def test_end_of_turn_ids_are_the_vocabulary_entries(gpt2, smollm2):
    """The end-of-turn ids looked up token by token equal those read from the whole vocabulary (an
    unknown token's unk id is never taken): SmolLM2 has <|im_end|> and <|endoftext|>, GPT-2 only
    <|endoftext|>, its EOS."""
    from raco.data.tokenize import END_OF_TURN_TOKENS, _end_ids

    for tokenizer in (gpt2, smollm2):
        vocab = tokenizer.get_vocab()
        expected = {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab} | {tokenizer.eos_token_id}
        assert _end_ids(tokenizer) == expected
    assert _end_ids(smollm2) == {smollm2.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    assert _end_ids(gpt2) == {gpt2.eos_token_id}
