"""Bad input: clear errors naming file, row/line and field (with a suggestion), or counted skips."""

from __future__ import annotations

import pytest

from raco.data import DataError, DataSpec, load_preference_data

PKU_ROW = {
    "prompt": "q",
    "response_0": "a",
    "response_1": "b",
    "better_response_id": 0,
    "safer_response_id": 1,
}


def load(path, **kwargs):
    return load_preference_data(DataSpec(str(path), **kwargs))


def error_of(path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        load(path, **kwargs)
    return info.value


def test_misspelled_column_suggests_the_closest(write_jsonl):
    path = write_jsonl([{k.replace("safer", "safe"): v for k, v in PKU_ROW.items()}])
    err = error_of(path, adapter="pku_saferlhf")
    assert (err.file, err.field, err.suggestion) == (str(path), "safer_response_id", "safe_response_id")
    assert "did you mean 'safe_response_id'?" in str(err)


def test_case_mismatch_is_suggested(write_jsonl):
    path = write_jsonl(
        [{"prompt": "p", "Summary_A": "x", "Summary_B": "y", "quality": "A", "Verbosity": "B"}]
    )
    err = error_of(path)
    assert err.field == "Quality" and err.suggestion == "quality"


def test_column_missing_from_one_row(write_jsonl):
    bad = dict(PKU_ROW)
    del bad["response_1"]
    path = write_jsonl([PKU_ROW, {"response_1x": "b", **bad}])
    err = error_of(path)
    assert (err.row, err.field, err.suggestion) == (2, "response_1", "response_1x")
    assert f"{path}, line 2, field 'response_1'" in str(err)


def test_wrong_type_is_named(write_jsonl):
    path = write_jsonl([PKU_ROW, PKU_ROW, PKU_ROW | {"response_0": 42}])
    err = error_of(path)
    assert str(err) == (
        f"{path}, line 3, field 'response_0': has type int; expected text or a list of chat messages"
    )


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        ({"better_response_id": 2}, "better_response_id", "must be 0 or 1"),
        ({"safer_response_id": "1"}, "safer_response_id", "must be 0 or 1"),
        ({"prompt": None}, "prompt", "missing"),
        ({"response_1": 3}, "response_1", "has type int"),
        ({"is_response_0_safe": "yes"}, "is_response_0_safe", "true or false"),
    ],
)
def test_invalid_values(write_jsonl, change, field, needle):
    path = write_jsonl([PKU_ROW | {"is_response_0_safe": True}, PKU_ROW | change])
    err = error_of(path, adapter="pku_saferlhf")
    assert (err.file, err.row, err.field) == (str(path), 2, field)
    assert needle in err.message


def test_label_outside_the_allowed_values(assets, tmp_path):
    path = tmp_path / "labels.jsonl"
    text = (assets / "raco_reddit.jsonl").read_text().splitlines()
    text[2] = text[2].replace('"Verbosity": "B"', '"Verbosity": "C"')
    path.write_text("\n".join(text) + "\n")
    err = error_of(path)
    assert (err.row, err.field) == (3, "Verbosity")
    assert "label 'C' is outside the allowed values" in str(err)


def test_csv_row_numbers(assets, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        (assets / "pairwise.csv")
        .read_text()
        .replace('"2+2?",5,4,B', '"2+2?",5,4,maybe')
        .replace("2+2?,5,4,B", "2+2?,5,4,maybe")
    )
    err = error_of(
        path,
        adapter="pairwise",
        columns={"prompt": "question", "response_1": "answer_a", "response_2": "answer_b"},
        labels={"helpful": "helpful", "concise": "concise"},
    )
    assert f"{path}, row 2, field 'helpful': label 'maybe'" in str(err)


def test_skip_mode_counts_invalid_rows(write_jsonl):
    path = write_jsonl(
        [
            PKU_ROW,
            PKU_ROW | {"response_1": ["b"]},
            PKU_ROW | {"better_response_id": 7},
            PKU_ROW | {"response_1": ["c"]},
        ]
    )
    data = load(path, on_invalid="skip")
    assert len(data) == 1
    assert data.skipped == {
        "invalid response_1: message 0 must be a mapping with 'role' and 'content', got 'b'": 1,
        "invalid better_response_id: must be 0 or 1 (the id of a response), got 7": 1,
        "invalid response_1: message 0 must be a mapping with 'role' and 'content', got 'c'": 1,
    }


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        (
            [
                {"prompt": "p", "chosen": "a", "rejected": "b"},
                {"prompt": "p", "chosen": "a", "rejected": "a"},
            ],
            "rejected",
        ),
        (
            [
                {"prompt": "p", "response_1": "x", "response_2": "y", "raco_s_a": 1},
                {"prompt": "p", "response_1": "x", "response_2": "x", "raco_s_a": 1},
            ],
            "response_2",
        ),
    ],
)
def test_identical_responses_in_a_users_own_file_are_errors(write_jsonl, rows, field):
    """Generic layouts (trl, pairwise) are the user's own files: a bad pair is named, not skipped."""
    path = write_jsonl(rows)
    err = error_of(path)
    assert str(err) == f"{path}, line 2, field '{field}': is identical to the other response"


@pytest.mark.parametrize("empty", ["", "   ", [{"role": "assistant", "content": " "}]])
def test_empty_response_in_a_users_own_file_is_an_error(write_jsonl, empty):
    path = write_jsonl(
        [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": empty, "rejected": "b"}]
    )
    err = error_of(path)
    assert (err.file, err.row, err.field) == (str(path), 2, "chosen")
    assert err.message.startswith("is empty")


def test_all_zero_rows_are_skipped_not_errors(write_jsonl):
    row = {"prompt": "p", "response_1": "x", "response_2": "y", "raco_s_a": 0, "raco_s_b": "tie"}
    data = load(write_jsonl([row, row | {"raco_s_a": 1}]))
    assert len(data) == 1 and data.skipped == {"all signs 0": 1}


def test_unknown_objective_suggests(assets):
    err = error_of(assets / "pku_saferlhf.jsonl", objectives=("harmles",))
    assert err.field == "harmles" and err.suggestion == "harmless"
    err = error_of(assets / "helpsteer2.jsonl", directions={"verbose": "lower"})
    assert err.suggestion == "verbosity"


def test_unknown_adapter_and_option(assets):
    assert error_of(assets / "pku_saferlhf.jsonl", adapter="pku_safe_rlhf").suggestion == "pku_saferlhf"
    err = error_of(assets / "pku_saferlhf.jsonl", options={"harmless_for": "is_safe"})
    assert err.field == "options.harmless_for" and err.suggestion == "harmless_from"


def test_bad_column_mapping(assets):
    err = error_of(assets / "pairwise.csv", adapter="pairwise", columns={"promt": "question"})
    assert err.field == "columns.promt" and err.suggestion == "prompt"


def test_undetectable_layout(write_jsonl):
    err = error_of(write_jsonl([{"a": 1, "b": 2}]))
    assert "cannot tell the data layout" in str(err) and "pku_saferlhf" in str(err)


def test_implicit_prompt_without_common_start(write_jsonl):
    err = error_of(write_jsonl([{"chosen": "Yes please", "rejected": "No thanks"}]))
    assert (err.row, err.field) == (1, "prompt")


def test_spec_rejects_unknown_keys_and_values():
    with pytest.raises(DataError, match="did you mean 'objectives'"):
        DataSpec.from_mapping({"path_or_name": "x", "objectivs": ["a"]})
    with pytest.raises(DataError, match="'higher' or 'lower'"):
        DataSpec("x", directions={"a": "down"})
    with pytest.raises(DataError, match="'error' or 'skip'"):
        DataSpec("x", on_invalid="ignore")


def test_misspelled_trl_prompt_column_is_not_silently_ignored(write_jsonl):
    """Without `prompt`, TRL's implicit prompt applies; a near-miss column means a typo, not that."""
    path = write_jsonl([{"promt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}])
    err = error_of(path)
    assert (err.file, err.field, err.suggestion) == (str(path), "prompt", "promt")
    assert "--column prompt=promt" in str(err)


def test_prompt_like_columns_keep_the_implicit_prompt(write_jsonl):
    """A column that merely contains the word (``prompt_id``) is not taken for a misspelling."""
    path = write_jsonl([{"prompt_id": 7, "chosen": "Q: hi A: yes", "rejected": "Q: hi A: no"}])
    (row,) = load(path).rows
    assert (row.prompt, row.response_1, row.response_2) == ("Q: hi A:", " yes", " no")
