"""Label parsing and value checks."""

from __future__ import annotations

import math

import pytest

from raco.data import DataError, parse_sign
from raco.data.validate import check_response, check_text


@pytest.mark.parametrize(
    ("value", "sign"),
    [
        (1, 1),
        (-1, -1),
        (0, 0),
        (1.0, 1),
        (-1.0, -1),
        (None, 0),
        (math.nan, 0),
        ("+1", 1),
        ("1", 1),
        ("-1", -1),
        ("0", 0),
        ("A", 1),
        ("a", 1),
        ("B", -1),
        (" b ", -1),
        ("tie", 0),
        ("Tie", 0),
        ("TIE", 0),
        ("equal", 0),
        ("same", 0),
        ("both", 0),
        ("neither", 0),
        ("N/A", 0),
        ("", 0),
        ("Summary_A", 1),
        ("summary_b", -1),
    ],
)
def test_parse_sign_accepts_the_documented_forms(value, sign):
    assert parse_sign(value, "label") == sign


@pytest.mark.parametrize("value", [2, -2, 0.5, "C", "yes", True, False, [1], {"a": 1}])
def test_parse_sign_rejects_everything_else(value):
    with pytest.raises(DataError) as info:
        parse_sign(value, "Quality")
    assert info.value.field == "Quality"
    assert "field 'Quality'" in str(info.value)


def test_check_text_accepts_text_and_messages():
    assert check_text("hi", "prompt") == "hi"
    messages = [{"role": "user", "content": "hi", "extra": 1}]
    assert check_text(messages, "prompt") == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (None, "missing"),
        (3, "has type int"),
        ([], "non-empty list"),
        ([{"role": "user"}], "'role' and 'content'"),
        ([{"role": "user", "content": 5}], "content of type int"),
        ([{"role": "user", "content": "  "}], "blank content"),
    ],
)
def test_check_text_errors_name_the_problem(value, needle):
    with pytest.raises(DataError) as info:
        check_text(value, "prompt")
    assert needle in str(info.value)
    assert info.value.field == "prompt"


def test_check_response_requires_assistant_messages():
    assert check_response({"role": "assistant", "content": "ok"}, "chosen") == [
        {"role": "assistant", "content": "ok"}
    ]
    with pytest.raises(DataError, match="role 'assistant'"):
        check_response([{"role": "user", "content": "ok"}], "chosen")
