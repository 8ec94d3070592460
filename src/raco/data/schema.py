"""The internal form of preference data: a prompt, two responses, one sign per objective.

Sign convention (docs/algorithm.md §1): ``+1`` objective prefers ``response_1``, ``-1`` prefers
``response_2``, ``0`` tie or unknown (the row gives that objective no gradient).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias, overload

Message: TypeAlias = dict[str, Any]
"""A chat message: ``{"role": "system" | "user" | "assistant" | ..., "content": str}``."""

Text: TypeAlias = str | list[Message]
"""Plain text or a list of chat messages."""


@dataclass(frozen=True)
class PreferenceRow:
    """One preference pair.

    ``prompt`` is text or chat messages (the conversation so far); each response is text or the
    assistant message(s) that follow the prompt. ``signs[i]`` belongs to ``objectives[i]`` of the
    dataset holding the row; ``index`` is the row's position in that dataset; ``source`` names the
    file or dataset it came from (with its row number where known).
    """

    prompt: Text
    response_1: Text
    response_2: Text
    signs: tuple[int, ...]
    source: str | None = None
    index: int = 0

    def is_chat(self) -> bool:
        """True when any part is given as chat messages (so the chat template is used)."""
        return any(isinstance(part, list) for part in (self.prompt, self.response_1, self.response_2))


@dataclass
class PreferenceDataset(Sequence[PreferenceRow]):
    """Rows of one schema plus the names of their objectives and what was skipped while loading.

    ``skipped`` maps a reason (e.g. ``"all signs 0"``) to a count of source rows left out; ``notes``
    are what loading noticed and logged, such as columns that look like unread labels
    (:mod:`raco.data.hints`).
    """

    objectives: tuple[str, ...]
    rows: list[PreferenceRow]
    skipped: dict[str, int] = field(default_factory=dict)
    source: str | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objective names must be distinct, got {self.objectives}")
        for position, row in enumerate(self.rows):
            if len(row.signs) != len(self.objectives):
                raise ValueError(
                    f"row {position} has {len(row.signs)} signs for {len(self.objectives)} objectives"
                )

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, item: int) -> PreferenceRow: ...
    @overload
    def __getitem__(self, item: slice) -> list[PreferenceRow]: ...
    def __getitem__(self, item: int | slice) -> PreferenceRow | list[PreferenceRow]:
        return self.rows[item]

    def __iter__(self) -> Iterator[PreferenceRow]:
        return iter(self.rows)


def reindexed(rows: Sequence[PreferenceRow]) -> list[PreferenceRow]:
    """Copies of ``rows`` whose ``index`` is their position (0, 1, ...)."""
    return [replace(row, index=position) for position, row in enumerate(rows)]


def add_skip(skipped: dict[str, int], reason: str, count: int = 1) -> None:
    """Count ``count`` source rows left out for ``reason``."""
    skipped[reason] = skipped.get(reason, 0) + count


def merge_skips(*parts: Mapping[str, int]) -> dict[str, int]:
    """Sum several ``skipped`` maps."""
    total: dict[str, int] = {}
    for part in parts:
        for reason, count in part.items():
            add_skip(total, reason, count)
    return total


def prompt_text(prompt: Text) -> str:
    """A prompt's text: itself, or the last user message of a conversation (else its last message)."""
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if m.get("role") == "user"]
    last = (users or prompt)[-1:] if prompt else []
    return str(last[0].get("content", "")) if last else ""


def response_text(response: Text) -> str:
    """A response's text: itself, or the content of its assistant message(s)."""
    if isinstance(response, str):
        return response
    turns = [m for m in response if m.get("role") == "assistant"] or response
    return "\n".join(str(m.get("content", "")) for m in turns)


def distinct_prompts(rows: Sequence[PreferenceRow], limit: int | None = None) -> list[Text]:
    """The rows' prompts, each once, in order of first appearance (at most ``limit``)."""
    seen: dict[str, Text] = {}
    for row in rows:
        if limit is not None and len(seen) >= limit:
            break
        seen.setdefault(json.dumps(row.prompt, sort_keys=True), row.prompt)
    return list(seen.values())
