"""``raco data inspect``: text and JSON statistics, exit status, one-paragraph errors."""

from __future__ import annotations

import json
import subprocess
import sys

from raco.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_inspect_json(capsys, assets):
    status, out, _ = run(capsys, "data", "inspect", str(assets / "raco_reddit.jsonl"), "--json")
    assert status == 0
    stats = json.loads(out)
    assert set(stats) == {"rows", "objectives", "signs", "conflict_rate", "skipped"}
    assert stats["rows"] == 3
    assert stats["objectives"] == ["quality", "verbosity"]
    assert stats["signs"] == {"quality": {"+1": 2, "-1": 1, "0": 0}, "verbosity": {"+1": 2, "-1": 1, "0": 0}}
    assert stats["conflict_rate"] == {"quality|verbosity": 2 / 3}
    assert stats["skipped"] == {"all signs 0": 1}


def test_inspect_text_report(capsys, assets):
    status, out, _ = run(
        capsys,
        "data",
        "inspect",
        str(assets / "pku_saferlhf.jsonl"),
        "--dataset",
        "pku_saferlhf",
        "--split",
        "train",
        "--examples",
        "1",
    )
    assert status == 0
    assert "rows: 5" in out
    assert "objectives: helpful, harmless" in out
    assert "helpful: +1 3  -1 2  0 0" in out
    assert "harmless: +1 2  -1 3  0 0" in out
    assert "helpful|harmless: 60.0%" in out
    assert "skipped rows: 0" in out
    assert "example 0" in out and "How do I pick a lock?" in out and "example 1" not in out


def test_inspect_helpsteer2_with_options(capsys, assets):
    status, out, _ = run(
        capsys,
        "data",
        "inspect",
        str(assets / "helpsteer2.jsonl"),
        "--objectives",
        "helpfulness,verbosity",
        "--lower",
        "verbosity",
        "--json",
    )
    stats = json.loads(out)
    assert status == 0
    assert stats["signs"]["verbosity"] == {"+1": 1, "-1": 0, "0": 1}
    assert stats["skipped"] == {"prompt with a single response": 1}


def test_inspect_column_mapping(capsys, assets):
    status, out, _ = run(
        capsys,
        "data",
        "inspect",
        str(assets / "pairwise.csv"),
        "--dataset",
        "pairwise",
        "--column",
        "prompt=question",
        "--column",
        "response_1=answer_a",
        "--column",
        "response_2=answer_b",
        "--label",
        "helpful=helpful",
        "--json",
    )
    assert status == 0
    stats = json.loads(out)
    assert stats["signs"] == {"helpful": {"+1": 1, "-1": 1, "0": 0}}
    assert stats["skipped"] == {"all signs 0": 1}


def test_bad_input_exits_2_with_one_paragraph(capsys, write_jsonl):
    path = write_jsonl([{"prompt": "p", "chosen": "a", "rejected": "b"}, '{"prompt": '])
    status, out, err = run(capsys, "data", "inspect", str(path))
    assert status == 2 and out == ""
    assert err.startswith(f"raco: error: {path}, line 2: malformed JSON: Expecting value")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_skip_invalid_flag(capsys, write_jsonl):
    path = write_jsonl(
        [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a", "rejected": "a"}]
    )
    status, out, _ = run(capsys, "data", "inspect", str(path), "--skip-invalid", "--json")
    assert status == 0
    assert json.loads(out)["skipped"] == {"invalid rejected: is identical to the other response": 1}


def test_no_command_prints_help(capsys):
    status, _, err = run(capsys, "data")
    assert status == 2 and "usage" in err.lower()


def test_console_script_entry_point(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "raco.cli", "data", "inspect", str(empty)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"raco: error: {empty}: contains no rows (empty file or split)"
