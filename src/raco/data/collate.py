"""Padding tokenised pairs into one batch: both responses of every pair in one tensor.

Batch contract (B pairs, k objectives, T = the longest row of this batch):

* ``input_ids`` LongTensor [2B, T]: row ``b`` is prompt + response 1 of pair ``b``, row ``B + b``
  prompt + response 2; right-padded with ``pad_token_id``.
* ``attention_mask`` LongTensor [2B, T]: 1 on real tokens, 0 on padding.
* ``response_mask`` BoolTensor [2B, T]: True exactly on response tokens (including the EOS or
  end-of-turn token that ends a response); never at position 0, since the prompt has at least one
  token and the log-prob of token ``t`` is read from the logits at ``t - 1``.
* ``signs`` FloatTensor [B, k] in {+1, -1, 0}; ``row_index`` LongTensor [B] (the pairs' dataset index).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from raco.data.tokenize import TokenizedPair


class PairCollator:
    """``collate_fn`` for a DataLoader over :class:`TokenizedPair` items."""

    def __init__(self, pad_token_id: int) -> None:
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: set tokenizer.pad_token (e.g. to its eos token)")
        self.pad_token_id = int(pad_token_id)

    def __call__(self, pairs: Sequence[TokenizedPair]) -> dict[str, torch.Tensor]:
        """Pad ``pairs`` to one batch (see the module docstring for the layout)."""
        if not pairs:
            raise ValueError("cannot collate an empty batch")
        sequences: list[tuple[list[int], int]] = []  # (ids, prompt length)
        for key in ("response_1_ids", "response_2_ids"):
            for pair in pairs:
                if not pair["prompt_ids"]:
                    raise ValueError(f"pair {pair['row_index']} has an empty prompt")
                sequences.append((pair["prompt_ids"] + pair[key], len(pair["prompt_ids"])))
        width = max(len(ids) for ids, _ in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        response_mask = torch.zeros((len(sequences), width), dtype=torch.bool)
        for i, (ids, prompt_length) in enumerate(sequences):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
            response_mask[i, prompt_length : len(ids)] = True
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "response_mask": response_mask,
            "signs": torch.tensor([pair["signs"] for pair in pairs], dtype=torch.float32),
            "row_index": torch.tensor([pair["row_index"] for pair in pairs], dtype=torch.long),
        }
