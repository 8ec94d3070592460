"""The embedded demo data (``raco.demo_data``): it loads, has the sizes and objectives its datasheet
states, clean pairs, disjoint train/held-out prompts, signs that follow from its stored scores, and a
datasheet whose numbers are the ones measured on the files. No generation (except the slow test)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from raco.cli import main
from raco.data import DataSpec, dataset_stats, load_preference_data
from raco.demo_data import files, path
from raco.eval.scorers import ObjectiveScorer

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_demo_data.py"
OBJECTIVES = ["relevant", "concise", "covers"]


def load_script():
    """The build script as a module (it imports torch and the model only inside its functions)."""
    spec = importlib.util.spec_from_file_location("build_demo_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numbers() -> dict:
    """The machine-readable block of DATASHEET.md."""
    text = path("datasheet").read_text(encoding="utf-8")
    return json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))


def raw_rows(split: str) -> list[dict]:
    return [json.loads(line) for line in path(split).read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_files_load_with_the_stated_size_and_objectives(split):
    data = load_preference_data(DataSpec(str(path(split))))
    stated = numbers()["files"][split]
    assert list(data.objectives) == OBJECTIVES
    assert len(data.rows) == stated["rows"] > 0
    assert dict(data.skipped) == {}


def test_sizes_match_the_datasheet_and_the_split_is_about_85_15():
    stated = numbers()
    assert stated["command"] == "python scripts/build_demo_data.py --seed 0"
    assert 240 <= stated["prompts"] == stated["train_prompts"] + stated["eval_prompts"] <= 320
    assert stated["eval_prompts"] == round(0.15 * stated["prompts"])
    dropped = sum(stated["dropped"].values())
    assert stated["files"]["train"]["rows"] + stated["files"]["eval"]["rows"] == stated["prompts"] - dropped


def test_inspect_reports_the_objectives(capsys):
    assert main(["data", "inspect", str(path("train")), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["objectives"] == OBJECTIVES
    assert report["rows"] == numbers()["files"]["train"]["rows"]
    assert "notes" not in report  # the score and meta columns are not mistaken for labels


@pytest.mark.parametrize("split", ["train", "eval"])
def test_no_empty_or_identical_responses(split):
    for row in raw_rows(split):
        assert row["response_1"].strip() and row["response_2"].strip()
        assert row["response_1"] != row["response_2"]
        assert sorted(row["meta"]["styles"]) == ["brief", "detailed"]


def test_train_and_held_out_prompts_are_disjoint():
    train = {row["prompt"][0]["content"] for row in raw_rows("train")}
    held = {row["prompt"][0]["content"] for row in raw_rows("eval")}
    assert train and held and not train & held
    assert len(train) == len(raw_rows("train"))  # one pair per prompt


@pytest.mark.parametrize("split", ["train", "eval"])
def test_datasheet_numbers_equal_the_ones_recomputed_from_the_files(split):
    stats = dataset_stats(load_preference_data(DataSpec(str(path(split)))))
    stated = numbers()["files"][split]
    assert stated["signs"] == stats["signs"]
    assert stated["ties"] == {name: counts["0"] for name, counts in stats["signs"].items()}
    assert stated["conflict_rate"] == {k: round(v, 4) for k, v in stats["conflict_rate"].items()}
    rows = raw_rows(split)
    disagree = sum(
        any(r[f"raco_s_{a}"] * r[f"raco_s_{b}"] < 0 for a in OBJECTIVES for b in OBJECTIVES if a < b)
        for r in rows
    )
    assert stated["any_conflict"] == round(disagree / len(rows), 4)
    # the human-readable tables carry the same numbers
    text = path("datasheet").read_text(encoding="utf-8")
    for name, counts in stats["signs"].items():
        line = f"| {split} | {stats['rows']} | `{name}` | {counts['+1']} | {counts['-1']} | {counts['0']} |"
        assert line in text


def test_signs_follow_from_the_stored_scores_and_margins():
    script = load_script()
    for split in ("train", "eval"):
        for row in raw_rows(split):
            for name, (spec, direction, margin, _) in script.OBJECTIVES.items():
                first, second = row["scores"][name]
                assert row[f"raco_s_{name}"] == ObjectiveScorer(spec, direction).compare(
                    first, second, margin
                )
            # the length scorer is cheap enough to re-run here: words split on whitespace
            assert row["scores"]["concise"] == [
                len(row["response_1"].split()),
                len(row["response_2"].split()),
            ]


def test_relevance_and_conciseness_conflict_on_a_good_share_of_pairs():
    rates = numbers()["files"]["train"]["conflict_rate"]
    assert rates["relevant|concise"] >= 0.2  # the datasheet reports the exact figure


def test_files_helper_lists_every_shipped_file():
    shipped = files()
    assert set(shipped) == {"train", "eval", "datasheet"}
    assert all(entry.is_file() for entry in shipped.values())
    with pytest.raises(ValueError, match="no file 'test'"):
        path("test")


def test_prompts_are_deterministic_and_varied():
    script = load_script()
    prompts = script.make_prompts()
    assert prompts == script.make_prompts()
    assert len({p["text"] for p in prompts}) == len(prompts)
    assert {p["type"] for p in prompts} == {"explain", "advise", "summarise", "list", "compare", "describe"}
    train, held = script.split_prompts(prompts, 0)
    assert (train, held) == script.split_prompts(prompts, 0)
    assert script.split_prompts(prompts, 1) != (train, held)


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files(tmp_path):
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        subprocess.run(
            [sys.executable, str(SCRIPT), "--limit", "4", "--out", str(out)],
            check=True,
            capture_output=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        outputs.append(out)
    for split in ("train", "eval"):
        assert (outputs[0] / f"{split}.jsonl").read_bytes() == (outputs[1] / f"{split}.jsonl").read_bytes()


@pytest.mark.parametrize("split", ["train", "eval"])
def test_the_name_raco_demo_reads_the_shipped_split(split):
    """`data.train: raco-demo` (with `split`/`eval_split`) is the shipped file, row for row."""
    by_name = load_preference_data(DataSpec("raco-demo", split=split))
    by_path = load_preference_data(DataSpec(str(path(split))))
    assert by_name.rows == by_path.rows and len(by_name.rows) == numbers()["files"][split]["rows"]


def test_the_name_raco_demo_names_its_splits_on_a_bad_one(capsys):
    assert main(["data", "inspect", "raco-demo", "--data.split", "test"]) == 2
    assert "raco-demo: has no split 'test'; splits are train, eval" in capsys.readouterr().err
