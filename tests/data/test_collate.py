"""Exact padding and masks of pair batches on GPT-2's tokenizer."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from raco.data import DataSpec, PairCollator, load_preference_data, tokenize_dataset, tokenize_row
from raco.data.schema import PreferenceRow

EOS = PAD = 50256
SKY = PreferenceRow("The sky is", " blue.", " green.", (1, -1), index=0)
SUN = PreferenceRow("The sun is", " very bright indeed.", " cold.", (0, 1), index=1)


def test_batch_layout_padding_and_masks(gpt2):
    batch = PairCollator(gpt2.pad_token_id)([tokenize_row(SKY, gpt2), tokenize_row(SUN, gpt2)])
    assert batch["input_ids"].tolist() == [
        [464, 6766, 318, 4171, 13, EOS, PAD, PAD],  # pair 0, response 1
        [464, 4252, 318, 845, 6016, 5600, 13, EOS],  # pair 1, response 1
        [464, 6766, 318, 4077, 13, EOS, PAD, PAD],  # pair 0, response 2
        [464, 4252, 318, 4692, 13, EOS, PAD, PAD],  # pair 1, response 2
    ]
    assert batch["attention_mask"].tolist() == [
        [1] * 6 + [0] * 2,
        [1] * 8,
        [1] * 6 + [0] * 2,
        [1] * 6 + [0] * 2,
    ]
    assert batch["response_mask"].tolist() == [
        [False] * 3 + [True] * 3 + [False] * 2,
        [False] * 3 + [True] * 5,
        [False] * 3 + [True] * 3 + [False] * 2,
        [False] * 3 + [True] * 3 + [False] * 2,
    ]
    assert batch["signs"].tolist() == [[1.0, -1.0], [0.0, 1.0]]
    assert batch["row_index"].tolist() == [0, 1]
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long
    assert batch["response_mask"].dtype == torch.bool and batch["signs"].dtype == torch.float32


def test_width_is_the_longest_row_of_the_batch(gpt2):
    batch = PairCollator(PAD)([tokenize_row(SKY, gpt2)])
    assert batch["input_ids"].shape == (2, 6)
    assert not batch["response_mask"][:, 0].any()


def test_custom_pad_id_and_dataloader(gpt2, assets):
    data = load_preference_data(DataSpec(str(assets / "pku_saferlhf.jsonl")))
    pairs, stats = tokenize_dataset(data.rows, gpt2, max_length=32, max_prompt_length=8)
    loader = DataLoader(pairs, batch_size=2, collate_fn=PairCollator(pad_token_id=0))
    batches = list(loader)
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]
    for batch in batches:
        lengths = batch["attention_mask"].sum(dim=1)
        assert int(lengths.max()) == batch["input_ids"].shape[1]
        for row, length in enumerate(lengths.tolist()):
            assert (batch["input_ids"][row, length:] == 0).all()
            assert batch["response_mask"][row, length:].sum() == 0
            assert batch["response_mask"][row, length - 1]  # the response ends the row
    assert torch.cat([b["row_index"] for b in batches]).tolist() == [0, 1, 2, 3, 4]
    assert torch.cat([b["signs"] for b in batches]).tolist() == [[1, 1], [-1, 1], [1, -1], [-1, -1], [1, -1]]
    assert stats.rows == 5


def test_chat_batch_masks_only_the_assistant_reply(smollm2):
    row = PreferenceRow([{"role": "user", "content": "Hi"}], "Hello!", "Go away.", (1,))
    pair = tokenize_row(row, smollm2)
    batch = PairCollator(smollm2.pad_token_id)([pair])
    first = batch["input_ids"][0][batch["response_mask"][0]].tolist()
    assert first == pair["response_1_ids"]
    assert smollm2.decode(first) == "Hello!<|im_end|>"


def test_collator_errors():
    with pytest.raises(ValueError, match="pad_token_id"):
        PairCollator(None)
    with pytest.raises(ValueError, match="empty batch"):
        PairCollator(0)([])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(1, 99), min_size=1, max_size=6),
            st.lists(st.integers(1, 99), min_size=1, max_size=6),
            st.lists(st.integers(1, 99), min_size=1, max_size=6),
            st.sampled_from([-1, 0, 1]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_collated_rows_reassemble_the_pairs(items):
    pairs = [
        {
            "prompt_ids": p,
            "response_1_ids": a,
            "response_2_ids": b,
            "signs": [s],
            "row_index": i,
            "prompt_truncated": False,
            "response_truncated": False,
        }
        for i, (p, a, b, s) in enumerate(items)
    ]
    batch = PairCollator(0)(pairs)
    size = len(pairs)
    assert batch["input_ids"].shape[1] == max(len(p) + max(len(a), len(b)) for p, a, b, _ in items)
    for i, (prompt, first, second, _) in enumerate(items):
        for row, response in ((i, first), (size + i, second)):
            ids, mask = batch["input_ids"][row], batch["attention_mask"][row].bool()
            assert ids[mask].tolist() == prompt + response
            assert ids[batch["response_mask"][row]].tolist() == response
            assert not (batch["response_mask"][row] & ~mask).any()
