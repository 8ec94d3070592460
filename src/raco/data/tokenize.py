"""Token ids of preference pairs: the chat template for messages, concatenation for plain text.

Plain text: ``prompt_ids = tokenizer(prompt)`` (with the tokenizer's special tokens, e.g. BOS) and
``response_ids = tokenizer(response, add_special_tokens=False) + [eos]``.

Chat messages (any part a message list; a plain part is wrapped as a user prompt or an assistant
reply): ``prompt_ids = apply_chat_template(prompt, add_generation_prompt=True)``; the response ids
are the extra ids of ``apply_chat_template(prompt + response)``, which must start with the prompt
ids (else :class:`DataError`). Whitespace the template puts after the reply's end-of-turn token
(ChatML's ``"\\n"`` after ``<|im_end|>``) is dropped, so a response ends with its end token.

Truncation (counted per row): the prompt keeps its last ``max_prompt_length`` ids; if prompt plus
the longer response exceed ``max_length``, the prompt keeps its end so that at least one response
token fits, and the responses keep their start. A leading BOS id survives prompt truncation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

from transformers import PreTrainedTokenizerBase

from raco.data.errors import DataError
from raco.data.schema import Message, PreferenceRow, Text

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


class TokenizedPair(TypedDict):
    """Token ids of one pair, ready for :class:`raco.data.collate.PairCollator`."""

    prompt_ids: list[int]
    response_1_ids: list[int]
    response_2_ids: list[int]
    signs: list[int]
    row_index: int
    prompt_truncated: bool
    response_truncated: bool


@dataclass
class TruncationStats:
    """How many pairs were cut: ``prompt_truncated`` / ``response_truncated`` out of ``rows``."""

    rows: int = 0
    prompt_truncated: int = 0
    response_truncated: int = 0

    def add(self, pair: TokenizedPair) -> None:
        """Count one tokenised pair."""
        self.rows += 1
        self.prompt_truncated += int(pair["prompt_truncated"])
        self.response_truncated += int(pair["response_truncated"])

    def as_dict(self) -> dict[str, int]:
        """Plain dict for logs and reports."""
        return asdict(self)


def tokenize_row(
    row: PreferenceRow,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> TokenizedPair:
    """Token ids of ``row``'s prompt and both responses, truncated as the module docstring says."""
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if max_prompt_length is not None and max_prompt_length < 1:
        raise ValueError(f"max_prompt_length must be at least 1, got {max_prompt_length}")
    if row.is_chat():
        prompt, first, second = _encode_chat(row, tokenizer)
    else:
        prompt, first, second = _encode_plain(row, tokenizer)
    prompt, first, second, cut_prompt, cut_response = _truncate(
        prompt, first, second, max_length, max_prompt_length, tokenizer.bos_token_id
    )
    return TokenizedPair(
        prompt_ids=prompt,
        response_1_ids=first,
        response_2_ids=second,
        signs=list(row.signs),
        row_index=row.index,
        prompt_truncated=cut_prompt,
        response_truncated=cut_response,
    )


def tokenize_dataset(
    rows: Sequence[PreferenceRow],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> tuple[list[TokenizedPair], TruncationStats]:
    """:func:`tokenize_row` over ``rows``, with truncation counts."""
    stats = TruncationStats()
    pairs = []
    for row in rows:
        pair = tokenize_row(row, tokenizer, max_length, max_prompt_length)
        stats.add(pair)
        pairs.append(pair)
    return pairs, stats


def _encode_plain(row: PreferenceRow, tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], ...]:
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token to end plain-text responses", field="tokenizer")
    prompt = list(tokenizer(row.prompt)["input_ids"])
    responses = [
        [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        for text in (row.response_1, row.response_2)
    ]
    return prompt, *responses


def _encode_chat(row: PreferenceRow, tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], ...]:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "this row holds chat messages but the tokenizer has no chat template; use plain-text data "
            "or a tokenizer with a chat template",
            file=row.source,
            field="tokenizer",
        )
    prompt_messages = _as_messages(row.prompt, "user")
    prompt = _template_ids(tokenizer, prompt_messages, add_generation_prompt=True)
    ends = _end_ids(tokenizer)
    responses = []
    for name, response in (("response_1", row.response_1), ("response_2", row.response_2)):
        full = _template_ids(tokenizer, prompt_messages + _as_messages(response, "assistant"))
        if full[: len(prompt)] != prompt:
            raise DataError(
                "the chat template renders the prompt differently once the response is added (its "
                "generation prompt is not a prefix of the full conversation), so response tokens cannot "
                "be located",
                file=row.source,
                field=name,
            )
        responses.append(_strip_after_end(full[len(prompt) :], ends, tokenizer))
    return prompt, *responses


def _as_messages(part: Text, role: str) -> list[Message]:
    return list(part) if isinstance(part, list) else [{"role": role, "content": part}]


def _template_ids(tokenizer: PreTrainedTokenizerBase, messages: list[Message], **kwargs: Any) -> list[int]:
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, **kwargs)
    if isinstance(encoded, dict) or hasattr(encoded, "input_ids"):
        encoded = encoded["input_ids"]
    return [int(i) for i in encoded]


def _end_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids of the end-of-turn tokens the tokenizer has, and its EOS. Looked up one token at a time (an id
    counts only if it maps back to the same token, so an unknown token's unk id is not taken): building
    ``get_vocab()``, a dict of the whole vocabulary, for every row cost ~40 ms a row with SmolLM2."""
    found = [i for i in tokenizer.convert_tokens_to_ids(list(END_OF_TURN_TOKENS)) if i is not None]
    back = tokenizer.convert_ids_to_tokens(found)
    ends = {i for i, token in zip(found, back, strict=True) if token in END_OF_TURN_TOKENS}
    if tokenizer.eos_token_id is not None:
        ends.add(tokenizer.eos_token_id)
    return ends


def _strip_after_end(ids: list[int], ends: set[int], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Drop trailing whitespace ids after the last end-of-turn id."""
    last = max((i for i, token in enumerate(ids) if token in ends), default=None)
    if last is None or last == len(ids) - 1:
        return ids
    tail = ids[last + 1 :]
    return ids[: last + 1] if not tokenizer.decode(tail).strip() else ids


def _truncate(
    prompt: list[int],
    first: list[int],
    second: list[int],
    max_length: int | None,
    max_prompt_length: int | None,
    bos_id: int | None,
) -> tuple[list[int], list[int], list[int], bool, bool]:
    budget = len(prompt)
    if max_prompt_length is not None:
        budget = min(budget, max_prompt_length)
    if max_length is not None and budget + max(len(first), len(second)) > max_length:
        budget = min(budget, max_length - 1)
    cut_prompt = budget < len(prompt)
    if cut_prompt:
        if bos_id is not None and prompt[0] == bos_id and budget > 1:  # keep the BOS token
            prompt = [bos_id, *prompt[len(prompt) - budget + 1 :]]
        else:
            prompt = prompt[len(prompt) - budget :]
    cut_response = False
    if max_length is not None:
        room = max_length - len(prompt)
        cut_response = max(len(first), len(second)) > room
        first, second = first[:room], second[:room]
    return prompt, first, second, cut_prompt, cut_response
