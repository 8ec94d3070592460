"""Configuration: YAML + flag precedence, errors that name the key, shipped configs, --help."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raco.config import ConfigError, RunConfig, config_from_tree, from_dict, leaf_fields, load_config
from raco.training.cli_train import build_parser, main, parse_train_args
from raco.training.inputs import check_objectives, load_rows

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIGS = (
    REPO / "configs" / "accelerate"
)  # accelerate's format: tests/training/test_accelerate_configs.py
SHIPPED = sorted(p for p in (REPO / "configs").rglob("*.yaml") if ACCELERATE_CONFIGS not in p.parents)
PAPER = sorted((REPO / "configs" / "paper").glob("*.yaml"))


def write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_defaults_then_yaml_then_flags(tmp_path):
    path = write(tmp_path, {"data": {"train": "x.jsonl"}, "train": {"lr": 1e-4, "batch_size": 4}})
    cfg = load_config(path, {"train.lr": "2e-5"})
    assert cfg.train.lr == 2e-5  # flag beats YAML
    assert cfg.train.batch_size == 4  # YAML beats default
    assert cfg.train.grad_accum == RunConfig().train.grad_accum  # default


def test_unknown_yaml_key_suggests_closest(tmp_path):
    path = write(tmp_path, {"data": {"train": "x"}, "train": {"lrr": 1e-4}})
    with pytest.raises(ConfigError, match=r"unknown key `train.lrr`; did you mean `train.lr`"):
        load_config(path)


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("lr", "train.lr"),
        ("trian.lr", "train.lr"),
        ("method.nmae", "method.name"),
        ("objectives.helpful.wieght", "objectives.NAME.weight"),
        ("train.warmup", "train.warmup_ratio"),
    ],
)
def test_unknown_flag_suggests_closest(key, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean `{suggestion}`"):
        load_config(None, {"data.train": "x", key: "1"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method.name": "racoo"}, r"method.name: 'racoo' is not one of .*did you mean `raco`"),
        ({"method.c": "1.0"}, r"method.c: 1.0 must be in \[0, 1\)"),
        ({"train.lr": "fast"}, r"train.lr: expected a number"),
        ({"train.batch_size": "2.5"}, r"train.batch_size: expected an integer"),
        ({"objectives.a.weight": 0.5, "objectives.b.weight": 0.6}, r"simplex"),
        (
            {"objectives.a.weight": -0.5, "objectives.b.weight": 1.5},
            r"objectives.a.weight: -0.5 must be >= 0",
        ),
        ({"objectives.a.weight": 1.0, "objectives.b.loss": "dpo"}, r"objectives.b.weight: give every"),
        ({"objectives.a.beta": 0}, r"objectives.a.beta: 0.0 must be > 0"),
        ({"model.dtype": "fp16"}, r"model.dtype: 'fp16' is not one of"),
        ({"model.reference": "adapter"}, r"needs lora.enabled"),
        ({"model.trust_remote_code": "maybe"}, r"expected true/false"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"data.train": "x", **overrides})


def test_values_are_parsed_by_type():
    cfg = load_config(
        None,
        {
            "data.train": "x",
            "lora.target_modules": "q_proj,k_proj",
            "data.directions": "verbosity=lower",
            "train.max_steps": "none",
            "overwrite": "yes",
            "objectives.b.weight": "0.25",
            "objectives.a.weight": "0.75",
        },
    )
    assert cfg.lora.target_modules == ["q_proj", "k_proj"]
    assert cfg.data.directions == {"verbosity": "lower"}
    assert cfg.train.max_steps is None and cfg.overwrite is True
    assert [o.name for o in cfg.objectives] == ["b", "a"] and cfg.weights == [0.25, 0.75]


def test_uniform_weights_when_none_given():
    cfg = load_config(
        None,
        {"data.train": "x", "objectives.a.beta": 0.2, "objectives.b.beta": 0.2, "objectives.c.beta": 0.2},
    )
    assert cfg.weights == pytest.approx([1 / 3] * 3)


def _is_sweep(path):
    return path.name == "sweep.yaml" or "methods" in (yaml.safe_load(path.read_text()) or {})


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads(path):
    if _is_sweep(path):  # a raco sweep file: its base training config and eval are checked by it
        from raco.sweep.config import load_sweep_config

        sweep = load_sweep_config(path)
        assert sweep.objectives == ("relevant", "concise") and sweep.methods == ["raco", "weighted_sum"]
        return
    cfg = load_config(path)
    assert abs(sum(cfg.weights) - 1) < 1e-9
    if "cpu" in path.parts or "demo" in path.parts:  # their data ships too: objectives must match it
        import os

        os.chdir(REPO)
        check_objectives(cfg, load_rows(cfg)[0])


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_configs_use_the_authors_splits_lengths_and_a_cached_reference(path):
    """RedditSummary-Alignment's held-out split is `val` (PKU-SafeRLHF's `test`); 2048 tokens, 1536 of
    prompt; reference log-probs cached; bfloat16 mixed precision; the AMoPO baseline is one flag."""
    cfg = load_config(path)
    reddit = cfg.data.adapter == "raco_reddit"
    assert cfg.data.eval_split == ("val" if reddit else "test")
    assert (cfg.data.max_length, cfg.data.max_prompt_length) == (2048, 1536)
    assert cfg.model.reference == "cached" and not cfg.lora.enabled
    assert cfg.model.dtype == "bfloat16" and not cfg.model.pure_bf16
    assert {o.beta for o in cfg.objectives} == {0.2} and cfg.method.c == 0.4
    amopo = load_config(path, {"method.name": "amopo"})
    assert amopo.method.name == "amopo"


def test_there_are_paper_and_cpu_configs():
    names = {p.stem for p in SHIPPED}
    for model in ("qwen3-4b", "gemma-3-4b", "llama-3-8b"):
        assert {f"{model}_safety", f"{model}_reddit2", f"{model}_reddit3"} <= names
    assert {"tiny-random", "smollm2-lora"} <= names


def test_help_documents_every_option_once():
    import re

    text = build_parser().format_help()
    for key, field, _ in leaf_fields():
        if not key.endswith("objectives.NAME.name"):  # the name is part of the flag itself
            entries = re.findall(rf"^  --{re.escape(key)}[ \n]", text, flags=re.MULTILINE)
            assert len(entries) == 1, key
            assert field.metadata["help"], key


def test_objective_flags_by_name(tmp_path):
    path = write(
        tmp_path,
        {"data": {"train": "x"}, "objectives": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]},
    )
    namespace, overrides = parse_train_args(
        [
            "--config",
            str(path),
            "--objectives.a.weight",
            "0.7",
            "--objectives.b.weight=0.3",
            "--train.lr",
            "1e-5",
        ]
    )
    cfg = load_config(namespace.config, overrides)
    assert cfg.weights == [0.7, 0.3] and cfg.train.lr == 1e-5


def test_cli_errors_before_loading_a_model(tmp_path, monkeypatch, capsys):
    import raco.models.loading as loading

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_base_model", no_model)
    assert main(["--data.train", "x.jsonl", "--train.lrr", "1"]) == 2
    assert "did you mean `train.lr`" in capsys.readouterr().err


def test_objectives_must_match_the_data(tiny_config, monkeypatch, capsys):
    import raco.models.loading as loading

    monkeypatch.setattr(loading, "load_base_model", lambda *a, **k: pytest.fail("model loaded"))
    tree = tiny_config()
    tree["objectives"][0]["name"] = "friendy"
    from raco.training.loop import train

    with pytest.raises(ConfigError, match=r"objectives.friendy: not in the data.*did you mean `friendly`"):
        train(tree)


def test_existing_run_dir_is_never_overwritten_silently(tiny_config, tmp_path):
    from raco.training.loop import train

    tree = tiny_config()
    Path(tree["output_dir"]).mkdir()
    (Path(tree["output_dir"]) / "precious.txt").write_text("keep")
    with pytest.raises(ConfigError, match=r"already exists and is not empty; choose another output_dir"):
        train(tree)  # not a raco run (no config.yaml): --resume is not offered
    assert (Path(tree["output_dir"]) / "precious.txt").read_text() == "keep"


def test_bad_data_is_a_one_paragraph_error_and_leaves_no_run_dir(tiny_config, tmp_path, monkeypatch, capsys):
    """A malformed data file: exit 2 with file and line named, no traceback, no model, no run dir."""
    import raco.models.loading as loading

    monkeypatch.setattr(loading, "load_base_model", lambda *a, **k: pytest.fail("model loaded"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "x", "chosen": 3\n')
    tree = tiny_config()
    tree["data"]["train"] = str(bad)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(tree))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}, line 2: malformed JSON" in err and "Traceback" not in err
    assert not Path(tree["output_dir"]).exists()


def test_separate_datasets_mode_from_config(tiny_config, tmp_path):
    """data.separate: one chosen/rejected file per objective, merged with sign 0 for the others."""
    import json

    rows = {
        "helpful": [{"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(3)],
        "harmless": [{"prompt": f"r{i}", "chosen": f"safe {i}", "rejected": f"harm {i}"} for i in range(2)],
    }
    separate = {}
    for name, items in rows.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in items))
        separate[name] = {"path_or_name": str(path)}
    tree = tiny_config()
    tree["data"] = {"separate": separate, "eval_fraction": 0.2}
    tree["objectives"] = [{"name": "helpful", "weight": 0.5}, {"name": "harmless", "weight": 0.5}]
    cfg = from_dict(tree)
    names, train_rows, eval_rows, _ = load_rows(cfg)
    assert names == ("helpful", "harmless")
    signs = sorted(r.signs for r in [*train_rows, *eval_rows])
    assert signs == [(0, 1)] * 2 + [(1, 0)] * 3


def test_data_paths_resolve_from_the_config_folder(tmp_path, monkeypatch):
    """A relative data path that exists only next to the YAML file is taken from there; one that
    exists from the current directory, or a hub name, is kept as written."""
    folder = tmp_path / "exp"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text("{}\n")
    config = folder / "run.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": "data/train.jsonl", "eval": "org/dataset"}}))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config)
    assert cfg.data.train == str((folder / "data" / "train.jsonl").resolve())
    assert cfg.data.eval == "org/dataset"
    monkeypatch.chdir(folder)
    assert load_config(config).data.train == "data/train.jsonl"


def test_trackers_are_checked_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown tracker 'tensorbord'; did you mean `tensorboard`"):
        load_config(overrides={"data.train": "x.jsonl", "log.log_with": "tensorbord"})
    with pytest.raises(ConfigError, match=r"tracker 'aim' needs the `aim` package"):
        load_config(overrides={"data.train": "x.jsonl", "log.log_with": "aim"})


def test_objectives_follow_the_config_order(tiny_config):
    """Listing the objectives in another order than the data's reorders every row's signs."""
    tree = tiny_config()
    names, rows, _, _ = load_rows(from_dict(tree))
    tree["objectives"] = list(reversed(tree["objectives"]))
    swapped_names, swapped, _, _ = load_rows(from_dict(tree))
    assert swapped_names == tuple(reversed(names))
    assert [r.signs for r in swapped] == [tuple(reversed(r.signs)) for r in rows]
    assert any(r.signs[0] != r.signs[1] for r in rows)  # the check has teeth


# ----------------------------------------------------------------------------- first contact


def _fields_of(source: str) -> set[str]:
    """The dataclass fields of the TRL / transformers class an entry of FOREIGN_NAMES names."""
    import dataclasses

    from transformers import TrainingArguments

    if source == "TrainingArguments":
        return {f.name for f in dataclasses.fields(TrainingArguments)}
    import trl

    return {f.name for f in dataclasses.fields(getattr(trl, source))}


def test_foreign_names_are_trl_and_transformers_fields_and_map_to_raco_keys():
    """Every name of the table is a field of the TRL / transformers class it cites (the ones marked as
    dropped by newer releases are not fields any more), and every raco key it names exists."""
    from raco.config import FOREIGN_NAMES

    raco_keys = {key for key, _, _ in leaf_fields()}
    for name, foreign in FOREIGN_NAMES.items():
        assert foreign.key in raco_keys, (name, foreign.key)
        assert name not in raco_keys, name  # a raco key is never an alias
        assert foreign.same or foreign.note, name  # the others say what differs
        cls, _, dropped = foreign.source.partition(" (")
        assert (name in _fields_of(cls)) != bool(dropped), (name, foreign.source)


TYPED = {  # the names users type, with a value raco accepts for the aliases
    "learning_rate": "1e-5",
    "per_device_train_batch_size": "4",
    "gradient_accumulation_steps": "2",
    "num_train_epochs": "3",
    "max_steps": "100",
    "warmup_ratio": "0.05",
    "lr_scheduler_type": "cosine",
    "weight_decay": "0.01",
    "max_grad_norm": "0.5",
    "seed": "7",
    "output_dir": "runs/x",
    "beta": "0.1",
    "loss_type": "sigmoid",
    "max_length": "1024",
    "max_prompt_length": "128",
    "logging_steps": "10",
    "save_steps": "100",
    "eval_steps": "50",
    "bf16": "true",
    "gradient_checkpointing": "true",
    "report_to": "tensorboard",
    "lora_r": "16",
    "lora_alpha": "32",
    "lora_dropout": "0.05",
    "lora_target_modules": "q_proj,k_proj",
}


@pytest.mark.parametrize(("name", "value"), TYPED.items(), ids=list(TYPED))
def test_names_users_type_are_answered(name, value):
    """The TRL/TrainingArguments names users type set raco's key (same meaning) or are answered with
    raco's name; none is met with an unrelated suggestion (`learning_rate` once suggested
    train.warmup_ratio)."""
    from raco.config import FOREIGN_NAMES, canonical_key

    foreign = FOREIGN_NAMES.get(name)
    if foreign is not None and not foreign.same:
        with pytest.raises(ConfigError) as err:
            load_config(None, {"data.train": "x", name: value})
        assert str(err.value).startswith(f"unknown option `--{name}`; raco calls it `{foreign.key}`: ")
        return
    cfg = load_config(None, {"data.train": "x.jsonl", name: value})
    expected = load_config(None, {"data.train": "x.jsonl", canonical_key(name): value})
    assert cfg == expected and cfg != load_config(None, {"data.train": "x.jsonl"})


def test_aliases_set_the_raco_key_with_a_note(tmp_path, caplog):
    path = write(
        tmp_path, {"data": {"train": "x"}, "learning_rate": 1e-4, "train": {"per_device_train_batch_size": 2}}
    )
    caplog.set_level("WARNING", logger="raco.config")
    namespace, overrides = parse_train_args(
        ["--config", str(path), "--gradient_accumulation_steps", "4", "--lora_r=16", "--seed", "3"]
    )
    cfg = load_config(namespace.config, overrides)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.grad_accum) == (1e-4, 2, 4)
    assert (cfg.lora.r, cfg.train.seed, cfg.model.seed) == (16, 3, 0)
    notes = [r.getMessage() for r in caplog.records]
    assert f"note: `learning_rate` in {path} is read as `train.lr`, raco's name for it" in notes
    assert f"note: `train.per_device_train_batch_size` in {path} is read as `train.batch_size`" in notes[1]
    assert (
        "note: `--gradient_accumulation_steps` is read as `--train.grad_accum`, raco's name for it" in notes
    )
    assert load_config(path, {"train.lr": "2e-5"}).train.lr == 2e-5  # a raco flag beats an aliased YAML key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"beta": "0.2"},
            r"unknown option `--beta`; raco calls it `objectives.NAME.beta`: β is set per objective.*"
            r"\(--objectives.a.beta 0.2 --objectives.b.beta 0.2\)",
        ),
        ({"loss_type": "sigmoid"}, r"`objectives.NAME.loss`: .*dpo \(TRL's sigmoid\)"),
        ({"bf16": "true"}, r"raco calls it `model.dtype`: --model.dtype bfloat16"),
        ({"lr_scheduler_type": "cosine"}, r"`train.schedule`: .*constant_with_warmup"),
        ({"learning_rate": "1e-5", "train.lr": "2e-5"}, r"--learning_rate and --train.lr both set"),
    ],
)
def test_foreign_names_with_another_meaning_name_the_raco_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(
            None, {"data.train": "x", "objectives.a.beta": 0.1, "objectives.b.beta": 0.1, **overrides}
        )


def test_foreign_names_in_yaml(tmp_path):
    with pytest.raises(ConfigError, match=rf"unknown key `beta` in {tmp_path}.*objectives.NAME.beta"):
        load_config(write(tmp_path, {"data": {"train": "x"}, "beta": 0.1}))
    both = write(tmp_path, {"data": {"train": "x"}, "learning_rate": 1e-4, "train": {"lr": 1e-3}})
    with pytest.raises(ConfigError, match=r"`learning_rate` and `train.lr` both given"):
        load_config(both)
    cfg = from_dict({"data": {"train": "x"}, "model_name_or_path": "gpt2", "report_to": ["none"]})
    assert cfg.model.name == "gpt2" and cfg.log.log_with == []


def test_objective_typo_is_named_before_the_weights(tmp_path):
    """`--objectives.helpfull.weight` adds a third objective; the error names it and the listed ones
    first, instead of only "weights must sum to 1"."""
    path = write(
        tmp_path,
        {
            "data": {"train": "x"},
            "objectives": [{"name": "helpful", "weight": 0.5}, {"name": "harmless", "weight": 0.5}],
        },
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, {"objectives.helpfull.weight": "0.7", "objectives.harmless.weight": "0.3"})
    text = str(err.value)
    assert text.startswith(
        "--objectives.helpfull.weight: `helpfull` is not one of the config's objectives (helpful, harmless); "
        "did you mean `helpful` (--objectives.helpful.weight)?"
    )
    assert text.index("helpfull") < text.index("simplex")
    with pytest.raises(
        ConfigError, match=r"`hepl` is not one of the config's objectives \(helpful, harmless\)\."
    ):
        load_config(path, {"objectives.hepl.weight": "0.2"})
    assert load_config(path, {"objectives.helpful.weight": "0.7", "objectives.harmless.weight": "0.3"})


def test_mgda_says_once_that_it_ignores_the_weights(tmp_path, caplog):
    caplog.set_level("WARNING", logger="raco.config")
    weighted = {"data.train": "x", "objectives.a.weight": "0.7", "objectives.b.weight": "0.3"}
    load_config(None, {**weighted, "method.name": "mgda"})
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "mgda ignores the objective weights (a 0.7, b 0.3)" in notes[0]
    assert "eval/weighted_accuracy" in notes[0]
    caplog.clear()
    load_config(None, {**weighted, "method.name": "raco"})
    load_config(None, {"data.train": "x", "objectives.a.beta": "0.1", "method.name": "mgda"})
    assert not caplog.records  # weighted methods, or mgda without weights: nothing to say


def test_environment_overrides_come_last_and_are_logged(tmp_path, monkeypatch, caplog):
    caplog.set_level("WARNING", logger="raco.config")
    path = write(tmp_path, {"data": {"train": "x"}, "train": {"max_steps": 60}})
    monkeypatch.setenv("RACO_OVERRIDES", "train.max_steps=2 --data.max_eval_rows=4")
    cfg = load_config(path, {"train.max_steps": "30"})
    assert (cfg.train.max_steps, cfg.data.max_eval_rows) == (2, 4)
    assert "note: RACO_OVERRIDES sets train.max_steps=2 data.max_eval_rows=4" in caplog.messages
    # the same for a mapping (raco.train(dict)); a saved config read back (from_dict) is never changed
    tree = {"data": {"train": "x"}, "train": {"max_steps": 60}}
    assert config_from_tree(tree, {"train.max_steps": "30"}).train.max_steps == 2
    assert from_dict(tree).train.max_steps == 60 and tree["train"]["max_steps"] == 60
    monkeypatch.setenv("RACO_OVERRIDES", "train.max_steps")
    with pytest.raises(ConfigError, match=r"RACO_OVERRIDES: expected space-separated KEY=VALUE"):
        load_config(path)


def test_max_grad_norm_zero_is_refused():
    """0 would clip every update to nothing (Trainer reads 0 as "off"; raco's off is null)."""
    with pytest.raises(ConfigError, match=r"train.max_grad_norm: 0.0 must be > 0"):
        load_config(None, {"data.train": "x", "train.max_grad_norm": "0"})
    assert load_config(None, {"data.train": "x", "train.max_grad_norm": "none"}).train.max_grad_norm is None


def test_cli_answers_trl_names_before_loading_a_model(monkeypatch, capsys, caplog):
    import raco.models.loading as loading

    monkeypatch.setattr(loading, "load_base_model", lambda *a, **k: pytest.fail("model loaded"))
    assert main(["--data.train", "x.jsonl", "--beta", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "unknown option `--beta`; raco calls it `objectives.NAME.beta`" in err
    assert main(["--data.train", "x.jsonl", "--learning_rate", "1e-5", "--eval_strategy", "steps"]) == 2
    assert "unknown option `--eval_strategy`; raco calls it `train.eval_every`" in capsys.readouterr().err
    assert "note: `--learning_rate` is read as `--train.lr`, raco's name for it" in caplog.messages


def test_differences_say_what_another_run_directory_holds(tmp_path):
    """For the 'output_dir already exists' message: what the existing run computes differently (the
    README's Python example once hit a run of another method and was told to --resume it)."""
    import dataclasses

    from raco.config import differences

    shipped = REPO / "configs" / "cpu" / "tiny-random.yaml"
    saved = dataclasses.asdict(load_config(shipped))
    other = load_config(shipped, {"method.name": "weighted_sum", "output_dir": "elsewhere", "log.every": "5"})
    assert differences(saved, other) == ["method.name: 'raco' -> 'weighted_sum'"]
    assert differences(saved, load_config(shipped)) == []
