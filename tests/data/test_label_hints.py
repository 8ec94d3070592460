"""Columns that look like labels but are not read: named, with the exact mapping to type, in
`raco data inspect` and in the log of every load (training included)."""

from __future__ import annotations

import json

import pytest

from raco.cli import main
from raco.data import DataError, DataSpec, load_preference_data
from raco.data.hints import label_like_columns
from raco.data.sources import Records


def trl_rows(n: int = 6) -> list[dict]:
    return [
        {
            "prompt": f"q{i}",
            "chosen": f"yes {i}",
            "rejected": f"no {i}",
            "helpful": [1, -1, 0][i % 3],
            "shorter": "A" if i % 2 else "B",
            "id": i,
            "topic": "cooking",
        }
        for i in range(n)
    ]


MAPPING = "--data.labels helpful=helpful,shorter=shorter " + (
    "(YAML: data: {labels: {helpful: helpful, shorter: shorter}})"
)


def test_trl_file_with_plain_label_columns_says_how_to_map_them(write_jsonl, caplog):
    path = write_jsonl(trl_rows())
    caplog.set_level("WARNING", logger="raco.data")
    data = load_preference_data(DataSpec(str(path)))
    assert data.objectives == ("preference",)  # what it loads as without a mapping
    (note,) = data.notes
    assert note.startswith(
        f"{path}: columns helpful, shorter look like per-objective labels but are not read"
    )
    assert "the data loads as one objective `preference` (chosen preferred on every row)" in note
    assert f"to train helpful, shorter as objectives: {MAPPING}" in note
    assert "id" not in note.split(";")[0] and "topic" not in note  # ids beyond 0/1 and text are not labels
    assert caplog.messages == [f"note: {note}"]
    caplog.clear()
    mapped = load_preference_data(DataSpec(str(path), labels={"helpful": "helpful", "shorter": "shorter"}))
    assert mapped.objectives == ("helpful", "shorter") and mapped.notes == [] and not caplog.messages
    assert [r.signs for r in mapped.rows[:3]] == [(1, -1), (-1, 1), (0, -1)]


def test_a_partial_mapping_is_completed_in_the_hint(write_jsonl):
    path = write_jsonl(trl_rows())
    data = load_preference_data(DataSpec(str(path), labels={"helpful": "helpful"}))
    assert data.objectives == ("helpful",)
    assert MAPPING in data.notes[0] and "the data loads as objective helpful" in data.notes[0]


def test_pairwise_without_sign_columns_names_the_label_columns(write_jsonl):
    rows = [
        {"prompt": "p", "response_1": f"a{i}", "response_2": f"b{i}", "helpful": 1, "shorter": -1}
        for i in range(3)
    ]
    with pytest.raises(DataError) as err:
        load_preference_data(DataSpec(str(write_jsonl(rows))))
    message = str(err.value)
    assert "no sign columns" in message and f"to train helpful, shorter as objectives: {MAPPING}" in message


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, -1, 0, None], "signs"),
        (["a", "B", "tie"], "signs"),
        (["+1", "-1"], "signs"),
        ([0, 1, 1], "zero-one"),
        ([True, False], "boolean"),
        ([1, 2, 2], "one-two"),
        (["1", "2"], "one-two"),
        ([0, 0], None),  # no preference anywhere: nothing to train
        ([0, 1, 2, 3], None),  # an id
        ([7.5, 3.0], None),  # a score
        (["yes", "no"], None),
        ([None, None], None),
    ],
)
def test_what_looks_like_a_label(values, kind):
    records = Records("f", ("x",), [{"x": v} for v in values])
    assert label_like_columns(records, ["x"]) == ({"x": kind} if kind else {})


def test_zero_one_booleans_and_one_two_are_explained(write_jsonl):
    rows = [
        {
            "prompt": "p",
            "chosen": f"a{i}",
            "rejected": f"b{i}",
            "better": i % 2,
            "safe": bool(i % 2),
            "pick": 1 + i % 2,
        }
        for i in range(4)
    ]
    (note,) = load_preference_data(DataSpec(str(write_jsonl(rows)))).notes
    assert "to train better as objective: --data.labels better=better" in note
    assert "better holds only 0/1: 1 is read as response 1 (chosen) preferred and 0 as a tie" in note
    assert "safe holds true/false, which raco does not read as a label: rewrite it as 1" in note
    assert "pick holds 1/2, which raco does not read as a label" in note


def test_built_in_adapters_and_mapped_files_have_no_notes(assets):
    for name in ("pku_saferlhf.jsonl", "raco_reddit_trl.jsonl", "trl_standard.jsonl", "ultrafeedback.jsonl"):
        assert load_preference_data(DataSpec(str(assets / name))).notes == [], name


def test_inspect_shows_the_hint(write_jsonl, capsys):
    path = write_jsonl(trl_rows())
    assert main(["data", "inspect", str(path), "--examples", "0"]) == 0
    out = capsys.readouterr().out
    assert "objectives: preference\nnote: " in out and MAPPING in out
    assert main(["data", "inspect", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert len(stats["notes"]) == 1 and MAPPING in stats["notes"][0]
    assert (
        main(["data", "inspect", str(path), "--json", "--data.labels", "helpful=helpful,shorter=shorter"])
        == 0
    )
    stats = json.loads(capsys.readouterr().out)
    assert stats["objectives"] == ["helpful", "shorter"] and "notes" not in stats


def test_training_data_loading_logs_the_hint(write_jsonl, tmp_path, caplog):
    """`raco train` reads data through the same loader: the note is logged before the objective check
    that would otherwise be the only message."""
    from raco.config import load_config
    from raco.training.inputs import load_rows

    path = write_jsonl(trl_rows(20))
    caplog.set_level("WARNING", logger="raco.data")
    cfg = load_config(None, {"data.train": str(path), "output_dir": str(tmp_path / "run")})
    names, *_ = load_rows(cfg)
    assert names == ("preference",)
    assert any(MAPPING in message for message in caplog.messages)
