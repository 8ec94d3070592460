"""Reading JSONL, JSON, Parquet and CSV files; errors name file and line/row."""

from __future__ import annotations

import csv
import json

import pytest

from raco.data import DataError, DataSpec, load_preference_data, load_records

ROW = {"prompt": "p", "chosen": "good", "rejected": "bad"}


def test_jsonl_keeps_line_numbers_and_skips_blank_lines(write_jsonl):
    path = write_jsonl([ROW, "", ROW])
    records = load_records(str(path))
    assert [number for number, _ in records.numbered()] == [1, 3]
    assert records.columns == ("prompt", "chosen", "rejected")


def test_malformed_jsonl_line_is_named(write_jsonl):
    path = write_jsonl([ROW, ROW, '{"prompt": "p", "chosen": '])
    with pytest.raises(DataError) as info:
        load_records(str(path))
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "malformed JSON" in message


def test_jsonl_line_that_is_not_an_object(write_jsonl):
    path = write_jsonl([ROW, "[1, 2]"])
    with pytest.raises(DataError, match=r"line 2: expected a JSON object, got list"):
        load_records(str(path))


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.csv", "empty.parquet"])
def test_empty_files_are_errors(tmp_path, name):
    path = tmp_path / name
    path.write_text("")
    with pytest.raises(DataError) as info:
        load_records(str(path))
    assert str(path) in str(info.value) and "no rows" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_records(str(tmp_path / "nope.jsonl"))


def test_json_list_and_wrapped_list(tmp_path):
    plain, wrapped = tmp_path / "a.json", tmp_path / "b.json"
    plain.write_text(json.dumps([ROW, ROW]))
    wrapped.write_text(json.dumps({"data": [ROW]}))
    assert len(load_records(str(plain))) == 2
    assert len(load_records(str(wrapped))) == 1


def test_parquet_file_loads_through_datasets(tmp_path):
    import datasets

    path = tmp_path / "pairs.parquet"
    rows = [
        ROW | {"raco_s_helpful": 1, "raco_s_short": -1},
        ROW | {"chosen": "fine", "raco_s_helpful": 0, "raco_s_short": 1},
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    data = load_preference_data(DataSpec(str(path)))
    assert data.objectives == ("helpful", "short")
    assert [row.signs for row in data] == [(1, -1), (0, 1)]


def test_csv_decodes_chat_message_cells(tmp_path):
    path = tmp_path / "chat.csv"
    prompt = json.dumps([{"role": "user", "content": "Hi, there"}])
    chosen = json.dumps([{"role": "assistant", "content": "Hello"}])
    rejected = json.dumps([{"role": "assistant", "content": "Go away"}])
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["prompt", "chosen", "rejected"], [prompt, chosen, rejected]])
    (row,) = load_preference_data(DataSpec(str(path))).rows
    assert row.prompt == [{"role": "user", "content": "Hi, there"}]
    assert row.response_2 == [{"role": "assistant", "content": "Go away"}]


def test_unknown_hub_dataset_is_a_data_error():
    with pytest.raises(DataError) as info:
        load_records("no-such-org/no-such-dataset-raco")
    assert "no-such-org/no-such-dataset-raco" in str(info.value)


def test_saved_dataset_folder_and_split(tmp_path):
    import datasets

    rows = [ROW, ROW | {"chosen": "great"}]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:1]), "test": datasets.Dataset.from_list(rows)}
    ).save_to_disk(str(tmp_path / "saved"))
    assert len(load_preference_data(DataSpec(str(tmp_path / "saved"), split="test"))) == 2
    with pytest.raises(DataError, match=r"has no split 'tset'.*did you mean 'test'"):
        load_records(str(tmp_path / "saved"), split="tset")


def test_folder_of_jsonl_files_through_datasets(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps(ROW) + "\n")
    (row,) = load_preference_data(DataSpec(str(folder))).rows
    assert (row.prompt, row.response_1, row.response_2, row.signs) == ("p", "good", "bad", (1,))
