"""Checks of single values: signs/labels, prompts and responses (text or chat messages)."""

from __future__ import annotations

import math
from typing import Any

from raco.data.errors import DataError
from raco.data.schema import Message, Text

_POSITIVE = {"+1", "1", "a", "summary_a", "summary a", "response_a", "response_1", "first"}
_NEGATIVE = {"-1", "b", "summary_b", "summary b", "response_b", "response_2", "second"}
_ZERO = {"0", "tie", "tied", "equal", "same", "both", "neither", "none", "n/a", "na", ""}
SIGN_FORMS = "+1/-1/0, 'A'/'B'/'tie' (or 'equal', 'same', 'both', 'neither'), or empty for unknown"


def parse_sign(value: Any, field: str) -> int:
    """A sign in {+1, -1, 0} from a label value.

    Accepted: the integers 1, -1, 0 (or equal floats); ``None``/NaN (unknown, 0); the strings
    ``"+1"``, ``"1"``, ``"-1"``, ``"0"``; ``"A"`` (first response preferred), ``"B"`` (second) and
    tie forms ``"tie"``, ``"equal"``, ``"same"``, ``"both"``, ``"neither"``, ``"none"``, ``"N/A"``,
    ``""`` (case-insensitive). Booleans and anything else raise :class:`DataError`.
    """
    if value is None:
        return 0
    if isinstance(value, bool):
        raise DataError(f"label {value!r} is a boolean; expected {SIGN_FORMS}", field=field)
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return 0
        if value in (1, -1, 0):
            return int(value)
        raise DataError(f"label {value!r} is outside the allowed values {SIGN_FORMS}", field=field)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _POSITIVE:
            return 1
        if key in _NEGATIVE:
            return -1
        if key in _ZERO:
            return 0
        raise DataError(f"label {value!r} is outside the allowed values {SIGN_FORMS}", field=field)
    raise DataError(f"label has type {type(value).__name__}; expected {SIGN_FORMS}", field=field)


def check_messages(value: Any, field: str) -> list[Message]:
    """A non-empty list of ``{role, content}`` messages with text content, copied to plain dicts."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise DataError("expected a non-empty list of chat messages", field=field)
    messages: list[Message] = []
    for position, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(
                f"message {position} must be a mapping with 'role' and 'content', got {_short(message)}",
                field=field,
            )
        role, content = message["role"], message["content"]
        if not isinstance(role, str) or not role:
            raise DataError(f"message {position} has role {role!r}; expected a non-empty string", field=field)
        if not isinstance(content, str):
            raise DataError(
                f"message {position} has content of type {type(content).__name__}; expected text",
                field=field,
            )
        messages.append({"role": role, "content": content})
    return messages


def check_text(value: Any, field: str) -> Text:
    """Plain text (non-blank) or chat messages (see :func:`check_messages`)."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError("is empty", field=field)
        return value
    if isinstance(value, list | tuple | dict):
        messages = check_messages(value, field)
        if not any(m["content"].strip() for m in messages):
            raise DataError("is empty (every message has blank content)", field=field)
        return messages
    if value is None:
        raise DataError("is missing (null)", field=field)
    raise DataError(f"has type {type(value).__name__}; expected text or a list of chat messages", field=field)


def is_blank(value: Any) -> bool:
    """True for an empty response: blank text, an empty list, or messages whose contents are all blank
    (a value of the wrong type is not blank; :func:`check_response` reports it)."""
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list | tuple):
        return all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and not m["content"].strip()
            for m in value
        )
    return False


def check_response(value: Any, field: str) -> Text:
    """A response: text, or assistant message(s) (a lone ``{role, content}`` mapping is accepted)."""
    text = check_text(value, field)
    if isinstance(text, list):
        roles = {m["role"] for m in text}
        if roles != {"assistant"}:
            raise DataError(
                f"response messages must all have role 'assistant', got roles {sorted(roles)}", field=field
            )
    return text


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
