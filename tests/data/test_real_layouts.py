"""Real dataset files as users have them: ultrafeedback_binarized's Parquet layout, compressed single
files (hh-rlhf, HelpSteer2), and the bad pairs published datasets contain (skipped, counted, logged)."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
from pathlib import Path

import pytest
from ultrafeedback_binarized import QUESTIONS, binarized_rows, write_binarized_folder, write_binarized_parquet

from raco.data import DataError, DataSpec, load_preference_data
from raco.data.adapters import detect_adapter
from raco.data.sources import load_records


def load(path, **kwargs):
    return load_preference_data(DataSpec(str(path), **kwargs))


# ----------------------------------------------------------------- HuggingFaceH4/ultrafeedback_binarized


@pytest.fixture
def binarized_folder(tmp_path) -> Path:
    return write_binarized_folder(tmp_path / "ultrafeedback_binarized")


def assert_binarized(data, questions):
    assert data.objectives == ("preference",)
    assert len(data) == len(questions)
    assert data.skipped == {}
    for row, (question, good, bad) in zip(data, questions, strict=True):
        assert row.prompt == [{"role": "user", "content": question}]
        assert row.response_1 == [{"role": "assistant", "content": good}]
        assert row.response_2 == [{"role": "assistant", "content": bad}]
        assert row.signs == (1,)


@pytest.mark.parametrize("adapter", ["trl", "auto"])
def test_ultrafeedback_binarized_split_train_prefs(binarized_folder, adapter):
    data = load(binarized_folder, split="train_prefs", adapter=adapter)
    assert_binarized(data, QUESTIONS)
    assert data.source.endswith(":train_prefs")
    assert_binarized(load(binarized_folder, split="test_prefs", adapter=adapter), QUESTIONS[:1])


@pytest.mark.parametrize("adapter", ["trl", "auto"])
def test_ultrafeedback_binarized_single_parquet_file(tmp_path, adapter):
    path = write_binarized_parquet(tmp_path / "train_prefs-00000-of-00001.parquet", binarized_rows(QUESTIONS))
    records = load_records(str(path))
    assert records.columns == (
        "prompt",
        "prompt_id",
        "chosen",
        "rejected",
        "messages",
        "score_chosen",
        "score_rejected",
    )
    assert detect_adapter(records, DataSpec(str(path))) == "trl"
    assert_binarized(load(path, adapter=adapter), QUESTIONS)


def test_binarized_multi_turn_conversation_keeps_earlier_turns_in_the_prompt(write_jsonl):
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Best colour?"},
    ]
    row = {
        "prompt": "Best colour?",
        "chosen": [*history, {"role": "assistant", "content": "Blue."}],
        "rejected": [*history, {"role": "assistant", "content": "No idea."}],
    }
    (loaded,) = load(write_jsonl([row])).rows
    assert loaded.prompt == history
    assert loaded.response_2 == [{"role": "assistant", "content": "No idea."}]


def test_explicit_conversational_prompt_repeated_in_the_responses_is_removed(write_jsonl):
    """Explicit-prompt conversational TRL rows whose chosen/rejected also hold the prompt turns."""
    user = {"role": "user", "content": "What color is the sky?"}
    row = {
        "prompt": [user],
        "chosen": [user, {"role": "assistant", "content": "It is blue."}],
        "rejected": [user, {"role": "assistant", "content": "It is green."}],
    }
    (loaded,) = load(write_jsonl([row]), adapter="trl").rows
    assert loaded.prompt == [user]
    assert loaded.response_1 == [{"role": "assistant", "content": "It is blue."}]
    assert loaded.response_2 == [{"role": "assistant", "content": "It is green."}]


def test_explicit_conversational_prompt_not_at_the_start_of_the_responses(write_jsonl):
    user = {"role": "user", "content": "What color is the sky?"}
    row = {
        "prompt": [{"role": "user", "content": "Something else"}],
        "chosen": [user, {"role": "assistant", "content": "It is blue."}],
        "rejected": [user, {"role": "assistant", "content": "It is green."}],
    }
    path = write_jsonl([{"prompt": [user], "chosen": row["chosen"], "rejected": row["rejected"]}, row])
    with pytest.raises(DataError) as info:
        load(path)
    assert str(info.value).startswith(
        f"{path}, line 2, field 'chosen': holds a whole conversation that does not start with the "
        "prompt's messages"
    )


def test_implicit_conversation_diverging_at_a_user_turn_is_an_error(write_jsonl):
    row = {
        "prompt": "q",
        "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"}],
        "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}],
    }
    with pytest.raises(DataError) as info:
        load(write_jsonl([row]))
    assert (info.value.row, info.value.field) == (1, "prompt")
    assert "non-empty list of chat messages" in info.value.message


# ----------------------------------------------------------------- compressed single files

HS2 = [
    {"prompt": "What is 2+2?", "response": "4", "scores": (3, 4, 4, 0, 0)},
    {"prompt": "What is 2+2?", "response": "It is 4.", "scores": (4, 4, 4, 1, 1)},
]
ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def helpsteer2_row(prompt, response, scores):
    return {"prompt": prompt, "response": response, **dict(zip(ATTRIBUTES, scores, strict=True))}


def jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.mark.parametrize(
    ("suffix", "compress"), [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)]
)
def test_compressed_jsonl_helpsteer2(tmp_path, suffix, compress):
    """HelpSteer2 ships train.jsonl.gz; detected and paired like the plain file."""
    path = tmp_path / f"train.jsonl{suffix}"
    path.write_bytes(
        compress(jsonl_bytes([helpsteer2_row(r["prompt"], r["response"], r["scores"]) for r in HS2]))
    )
    data = load(path)
    assert data.objectives == ATTRIBUTES
    assert [(row.response_1, row.response_2, row.signs) for row in data] == [
        ("4", "It is 4.", (-1, 0, 0, -1, -1))
    ]
    assert data[0].source == f"{path}:1"


def test_compressed_json_and_csv(tmp_path):
    rows = [
        {"prompt": "p", "chosen": "good", "rejected": "bad"},
        {"prompt": "q", "chosen": "yes", "rejected": "no"},
    ]
    as_json = tmp_path / "pairs.json.gz"
    as_json.write_bytes(gzip.compress(json.dumps(rows).encode()))
    as_csv = tmp_path / "pairs.csv.gz"
    as_csv.write_bytes(gzip.compress(b"prompt,chosen,rejected\np,good,bad\nq,yes,no\n"))
    for path in (as_json, as_csv):
        data = load(path)
        assert [(row.prompt, row.response_1, row.response_2) for row in data] == [
            ("p", "good", "bad"),
            ("q", "yes", "no"),
        ]


def test_hh_rlhf_folder_of_gzipped_jsonl_with_data_dir(tmp_path):
    """A local copy of Anthropic/hh-rlhf: <data_dir>/train.jsonl.gz and test.jsonl.gz."""
    row = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.",
    }
    for data_dir in ("helpful-base", "harmless-base"):
        (tmp_path / "hh-rlhf" / data_dir).mkdir(parents=True)
        (tmp_path / "hh-rlhf" / data_dir / "train.jsonl.gz").write_bytes(
            gzip.compress(jsonl_bytes([row, row]))
        )
        (tmp_path / "hh-rlhf" / data_dir / "test.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes([row])))
    data = load(tmp_path / "hh-rlhf", data_dir="helpful-base", split="test")
    assert data.objectives == ("helpful",)
    assert [(row.prompt, row.response_1, row.response_2) for row in data] == [
        ("\n\nHuman: Hi\n\nAssistant:", " Hello!", " Go away.")
    ]
    assert len(load(tmp_path / "hh-rlhf", data_dir="harmless-base")) == 2


def test_hh_rlhf_single_gzipped_file(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    row = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: No."}
    path.write_bytes(gzip.compress(jsonl_bytes([row])))
    (loaded,) = load(path, data_dir="harmless-base").rows
    assert (loaded.prompt, loaded.response_2) == ("\n\nHuman: Hi\n\nAssistant:", " No.")


def test_malformed_line_in_a_gzipped_file_is_named(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": \n'))
    with pytest.raises(DataError) as info:
        load_records(str(path))
    assert str(info.value).startswith(f"{path}, line 2: malformed JSON: Expecting value")


@pytest.mark.parametrize("name", ["broken.jsonl.gz", "broken.json.gz", "broken.jsonl.xz", "broken.csv.gz"])
def test_damaged_archive_is_a_data_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not compressed data at all")
    with pytest.raises(DataError) as info:
        load_records(str(path))
    assert str(info.value).startswith(f"{path}: ")


def test_empty_compressed_file(tmp_path):
    for name in ("empty.jsonl.gz", "empty.csv.gz"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(b""))
        with pytest.raises(DataError, match="contains no rows"):
            load_records(str(path))


def test_unsupported_compressed_type(tmp_path):
    path = tmp_path / "pairs.parquet.gz"
    path.write_bytes(gzip.compress(b"x"))
    with pytest.raises(DataError) as info:
        load_records(str(path))
    assert str(info.value) == (
        f"{path}: unknown file type '.parquet.gz'; compressed (.gz, .bz2, .xz) files must be one of "
        ".jsonl, .ndjson, .json, .csv, .tsv"
    )


def test_missing_compressed_file_is_named(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_records(str(tmp_path / "nope.jsonl.gz"))


def test_non_utf8_line_is_named_and_a_bom_is_accepted(tmp_path):
    good = b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + good + good)
    assert len(load_records(str(bom))) == 2
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(good + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(DataError) as info:
        load_records(str(latin))
    assert str(info.value).startswith(f"{latin}, line 2: is not UTF-8 text (byte 16 of the line: b'\\xe9')")


# ----------------------------------------------------------------- bad pairs of published datasets


def test_helpsteer2_empty_and_identical_responses_are_skipped_counted_and_logged(tmp_path, caplog):
    rows = [
        helpsteer2_row("Q1", "A short answer.", (2, 2, 2, 1, 1)),
        helpsteer2_row("Q1", "", (0, 0, 0, 0, 0)),
        helpsteer2_row("Q1", "A longer, better answer.", (4, 4, 4, 2, 2)),
        helpsteer2_row("Q2", "Same text.", (3, 3, 3, 1, 1)),
        helpsteer2_row("Q2", "Same text.", (2, 3, 3, 1, 1)),
        helpsteer2_row("Q3", "   ", (1, 1, 1, 1, 1)),
        helpsteer2_row("Q3", "Only real answer.", (4, 4, 4, 1, 1)),
    ]
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_bytes(rows)))
    with caplog.at_level(logging.WARNING, logger="raco.data"):
        data = load(path)
    assert [(row.response_1, row.response_2, row.signs) for row in data] == [
        ("A short answer.", "A longer, better answer.", (-1, -1, -1, -1, -1))
    ]
    assert data.skipped == {
        "row with empty response": 2,
        "identical responses": 1,
        "prompt with a single response": 1,
    }
    logged = [record.getMessage() for record in caplog.records]
    assert f"{path}: skipped 2: row with empty response (first at line 2)" in logged
    assert f"{path}: skipped 1: identical responses (first at line 4)" in logged
    assert f"{path}: skipped 1: prompt with a single response" in logged


def test_helpsteer2_wrong_response_type_names_its_own_row(write_jsonl):
    path = write_jsonl(
        [helpsteer2_row("Q", "fine", (1, 1, 1, 1, 1)), helpsteer2_row("Q", 42, (1, 1, 1, 1, 1))]
    )
    with pytest.raises(DataError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}, line 2, field 'response': has type int; expected text or a list of chat messages"
    )


def test_hh_rlhf_identical_and_empty_replies_are_skipped(write_jsonl):
    def turn(reply):
        return f"\n\nHuman: Hi\n\nAssistant:{reply}"

    path = write_jsonl(
        [
            {"chosen": turn(" Hello!"), "rejected": turn(" Go away.")},
            {"chosen": turn(" Same."), "rejected": turn(" Same.")},
            {"chosen": turn(" Hello!"), "rejected": turn("")},
            {"chosen": turn(" "), "rejected": turn(" Go away.")},
        ]
    )
    for options in ({}, {"messages": True}):
        data = load(path, adapter="hh_rlhf", options=options)
        assert len(data) == 1
        assert data.skipped == {"identical responses": 1, "empty response": 2}


def test_pku_saferlhf_identical_and_empty_responses_are_skipped(write_jsonl):
    row = {
        "prompt": "q",
        "response_0": "a",
        "response_1": "b",
        "better_response_id": 0,
        "safer_response_id": 1,
    }
    path = write_jsonl(
        [row, row | {"response_1": "a"}, row | {"response_0": ""}, row | {"response_1": " \n"}]
    )
    data = load(path)
    assert [(r.response_1, r.response_2) for r in data] == [("a", "b")]
    assert data.skipped == {"identical responses": 1, "empty response": 2}


def test_raco_reddit_identical_and_empty_summaries_are_skipped(write_jsonl):
    def summary(text):
        return [{"role": "assistant", "content": text}]

    row = {
        "prompt": "post",
        "Summary_A": summary("short"),
        "Summary_B": summary("long one"),
        "Quality": "A",
        "Verbosity": "B",
    }
    path = write_jsonl([row, row | {"Summary_B": summary("short")}, row | {"Summary_A": summary("")}])
    data = load(path)
    assert len(data) == 1 and data.skipped == {"identical responses": 1, "empty response": 1}
    trl = write_jsonl(
        [
            {"prompt": "post", "chosen": "x", "rejected": "y", "raco_s_quality": 1},
            {"prompt": "post", "chosen": "x", "rejected": "x", "raco_s_quality": 1},
        ],
        name="trl.jsonl",
    )
    data = load(trl, adapter="raco_reddit")
    assert len(data) == 1 and data.skipped == {"identical responses": 1}


def test_ultrafeedback_identical_completions_are_skipped(write_jsonl):
    def completion(text, rating):
        return {"response": text, "annotations": {"helpfulness": {"Rating": rating}}}

    path = write_jsonl(
        [
            {
                "instruction": "q",
                "completions": [completion("x", "5"), completion("x", "3"), completion("y", "1")],
            }
        ]
    )
    data = load(path, objectives=("helpfulness",))
    assert [(row.response_1, row.response_2, row.signs) for row in data] == [
        ("x", "y", (1,)),
        ("x", "y", (1,)),
    ]
    assert data.skipped == {"identical responses": 1}


# ----------------------------------------------------------------- adapter options


@pytest.mark.parametrize(
    ("value", "pairs"),
    [(1, 1), ("2", 2), ("none", 3), (None, 3)],
)
def test_max_pairs_per_prompt_accepts_command_line_strings(assets, value, pairs):
    data = load(
        assets / "ultrafeedback.jsonl",
        objectives=("helpfulness",),
        options={"max_pairs_per_prompt": value},
    )
    assert len(data) + data.skipped.get("all signs 0", 0) == pairs + 1  # prompt 2 gives one all-zero pair


@pytest.mark.parametrize(
    ("adapter", "asset", "options", "message"),
    [
        (
            "ultrafeedback",
            "ultrafeedback.jsonl",
            {"max_pairs_per_prompt": 0},
            "must be a positive integer or none, got 0",
        ),
        (
            "ultrafeedback",
            "ultrafeedback.jsonl",
            {"max_pairs_per_prompt": "two"},
            "must be a positive integer or none, got 'two'",
        ),
        ("hh_rlhf", "hh_helpful.jsonl", {"messages": "maybe"}, "must be true or false, got 'maybe'"),
        (
            "pku_saferlhf",
            "pku_saferlhf.jsonl",
            {"harmless_from": "safe"},
            "must be 'safer_response_id' or 'is_safe', got 'safe'",
        ),
        ("raco_reddit", "raco_reddit.jsonl", {"prompt_column": ""}, "must be a non-empty name, got ''"),
    ],
)
def test_bad_option_values_are_named(assets, adapter, asset, options, message):
    with pytest.raises(DataError) as info:
        load(assets / asset, adapter=adapter, options=options)
    (name,) = options
    assert str(info.value) == f"{assets / asset}, field 'options.{name}': {message}"


def test_hh_rlhf_messages_option_from_a_string(assets):
    assert isinstance(load(assets / "hh_helpful.jsonl", options={"messages": "true"})[0].prompt, list)
    assert isinstance(load(assets / "hh_helpful.jsonl", options={"messages": "false"})[0].prompt, str)
