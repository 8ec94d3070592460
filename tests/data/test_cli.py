"""``raco data inspect``: text and JSON statistics, exit status, one-paragraph errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from ultrafeedback_binarized import write_binarized_folder

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
        "--data.adapter",
        "pku_saferlhf",
        "--data.split",
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
        "--data.directions",
        "verbosity=lower",
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
        "--data.adapter",
        "pairwise",
        "--data.columns",
        "prompt=question,response_1=answer_a",
        "--data.columns",
        "response_2=answer_b",
        "--data.labels",
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


def test_on_invalid_skip_flag(capsys, write_jsonl):
    path = write_jsonl(
        [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a", "rejected": "a"}]
    )
    status, out, _ = run(capsys, "data", "inspect", str(path), "--data.on_invalid", "skip", "--json")
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


# ----------------------------------------------------------------- one vocabulary with `raco train`

PKU_FLAGS = ["--data.adapter", "pku_saferlhf", "--data.options", "harmless_from=is_safe"]


def test_adapter_options_reach_inspect(capsys, assets):
    status, out, _ = run(capsys, "data", "inspect", str(assets / "pku_saferlhf.jsonl"), *PKU_FLAGS, "--json")
    assert status == 0
    # is_response_0_safe / is_response_1_safe: (T,F) (T,F) (F,T) (F,F) (T,T)
    assert json.loads(out)["signs"]["harmless"] == {"+1": 2, "-1": 1, "0": 2}
    status, out, _ = run(
        capsys,
        "data",
        "inspect",
        str(assets / "ultrafeedback.jsonl"),
        "--data.options",
        "max_pairs_per_prompt=1",
        "--json",
    )
    assert status == 0 and json.loads(out)["rows"] == 1 and json.loads(out)["skipped"] == {"all signs 0": 1}
    status, out, _ = run(
        capsys, "data", "inspect", str(assets / "hh_helpful.jsonl"), "--data.options", "messages=true"
    )
    assert (
        status == 0
        and "prompt: user: Hi | assistant: Hello! How can I help? | user: Recommend a book." in out
    )


def test_bad_option_value_exits_2(capsys, assets):
    status, out, err = run(
        capsys,
        "data",
        "inspect",
        str(assets / "ultrafeedback.jsonl"),
        "--data.options",
        "max_pairs_per_prompt=0",
    )
    assert status == 2 and out == ""
    assert err == (
        f"raco: error: {assets / 'ultrafeedback.jsonl'}, field 'options.max_pairs_per_prompt': "
        "must be a positive integer or none, got '0'\n"
    )


def test_inspect_data_flags_are_raco_train_flags_with_the_same_meaning(assets):
    """Every `--data.*` flag of inspect is a `raco train` flag, and the same flags give the same spec."""
    from raco.config import leaf_fields, load_config
    from raco.data.inspect import add_inspect_arguments, inspect_spec
    from raco.data.spec import spec_from_config
    from raco.training.cli_train import parse_train_args

    parser = argparse.ArgumentParser()
    add_inspect_arguments(parser)
    inspect_flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--data.")}
    train_keys = {f"--{key}" for key, _, _ in leaf_fields()}
    assert inspect_flags and inspect_flags <= train_keys
    flags = [
        "--data.train",
        str(assets / "pairwise.csv"),
        "--data.adapter",
        "pairwise",
        "--data.split",
        "train",
        "--data.columns",
        "prompt=question,response_1=answer_a,response_2=answer_b",
        "--data.labels",
        "helpful=helpful,concise=concise",
        "--data.directions",
        "concise=lower",
        "--data.options",
        "some_option=1",
        "--data.on_invalid",
        "skip",
        "--data.revision",
        "main",
        "--data.data_dir",
        "sub",
        "--data.config_name",
        "default",
    ]
    _, overrides = parse_train_args(flags)
    assert spec_from_config(load_config(None, overrides).data) == inspect_spec(parser.parse_args(flags))


def test_inspect_reads_the_data_section_of_a_training_config(capsys, assets, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pku.jsonl").write_text((assets / "pku_saferlhf.jsonl").read_text())
    config = folder / "run.yaml"
    config.write_text(
        "data:\n"
        "  train: ../data/pku.jsonl  # relative to this file, as raco train reads it\n"
        "  adapter: pku_saferlhf\n"
        "  options: {harmless_from: is_safe}\n"
        "  max_length: 64\n"
        "objectives:\n"
        "  - {name: harmless, weight: 1.0}\n"
    )
    status, out, _ = run(capsys, "data", "inspect", "--config", str(config), "--json")
    stats = json.loads(out)
    assert status == 0
    assert stats["objectives"] == ["harmless"]
    assert stats["signs"] == {"harmless": {"+1": 2, "-1": 1, "0": 0}}
    assert stats["skipped"] == {"all signs 0": 2}
    # flags override the file, as in raco train
    status, out, _ = run(
        capsys,
        "data",
        "inspect",
        "--config",
        str(config),
        "--data.options",
        "harmless_from=safer_response_id",
        "--json",
    )
    assert status == 0 and json.loads(out)["signs"] == {"harmless": {"+1": 2, "-1": 3, "0": 0}}


def test_the_repository_training_config_inspects(capsys):
    status, out, _ = run(capsys, "data", "inspect", "--config", "configs/cpu/tiny-random.yaml", "--json")
    assert status == 0 and json.loads(out)["objectives"] == ["friendly", "concise"]


def test_config_is_never_a_dataset_configuration_name(capsys):
    status, out, err = run(capsys, "data", "inspect", "Anthropic/hh-rlhf", "--config", "helpful-base")
    assert status == 2 and out == ""
    assert err == (
        "raco: error: field '--config': --config is a training config file (RUN.yaml), as in raco train; "
        "for the dataset configuration name use --data.config_name helpful-base\n"
    )


def test_old_flag_names_still_work_with_a_note(capsys, assets):
    status, out, err = run(
        capsys,
        "data",
        "inspect",
        str(assets / "helpsteer2.jsonl"),
        "--dataset",
        "helpsteer2",
        "--split",
        "train",
        "--lower",
        "verbosity",
        "--skip-invalid",
        "--objectives",
        "verbosity",
        "--json",
    )
    assert status == 0
    assert json.loads(out)["signs"]["verbosity"] == {"+1": 1, "-1": 0, "0": 0}
    assert "--dataset is deprecated; use --data.adapter" in err
    assert "--lower is deprecated; use --data.directions OBJECTIVE=lower" in err
    assert "--skip-invalid is deprecated; use --data.on_invalid skip" in err


def test_two_sources_or_none(capsys, assets):
    path = str(assets / "pku_saferlhf.jsonl")
    status, _, err = run(capsys, "data", "inspect", path, "--data.train", "other.jsonl")
    assert status == 2 and "two sources given" in err
    status, _, err = run(capsys, "data", "inspect")
    assert status == 2 and "nothing to inspect" in err
    status, _, err = run(capsys, "data", "inspect", path, "--data.on_invalid", "ignore")
    assert status == 2 and "data.on_invalid: 'ignore' is not one of error, skip" in err


def test_ultrafeedback_binarized_folder_through_the_cli(capsys, tmp_path):
    folder = write_binarized_folder(tmp_path / "ub")
    status, out, _ = run(
        capsys, "data", "inspect", str(folder), "--data.split", "train_prefs", "--examples", "1"
    )
    assert status == 0
    assert "rows: 3" in out and "objectives: preference" in out
    assert "  prompt: user: What is the capital of France?" in out
    assert "  response_1: assistant: Paris is the capital of France." in out


# ----------------------------------------------------------------- start-up cost


def test_inspect_imports_neither_torch_nor_transformers(assets):
    code = (
        "import sys\n"
        "from raco.cli import main\n"
        f"status = main(['data', 'inspect', {str(assets / 'helpsteer2.jsonl')!r}, '--json'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy, status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("HEAVY [] 0")
