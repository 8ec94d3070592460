"""First contact, the parts that live in the training loop: bare TRL boolean flags, TRL names on
``--resume``, a score mgda's weights did not steer, and an existing output_dir that holds another run."""

from __future__ import annotations

import pytest

from raco.config import ConfigError


def test_bare_trl_boolean_flag_gets_the_raco_answer(tmp_path):
    from raco.training.cli_train import parse_train_args

    config = tmp_path / "x.yaml"
    config.write_text("model: {name: tiny-random}\n")
    from raco.config import load_config

    _, overrides = parse_train_args(["--config", str(config), "--bf16"])
    assert overrides == {"bf16": "true"}
    with pytest.raises(ConfigError, match=r"model\.dtype"):
        load_config(config, overrides)
    with pytest.raises(ConfigError, match="a value is required"):
        parse_train_args(["--config", str(config), "--objectives.friendly.beta"])


def test_resume_accepts_trl_names_of_resumable_options(tiny_config, monkeypatch):
    import raco.training.loop as loop

    tree = tiny_config(**{"train.max_steps": 2})
    result = loop.train(tree)
    seen = {}
    monkeypatch.setattr(loop, "completed_run", lambda run_dir: seen.setdefault("checked", run_dir) and None)
    monkeypatch.setattr(
        loop, "setup", lambda cfg, resuming: seen.setdefault("every", cfg.log.every) and 1 / 0
    )
    with pytest.raises(ZeroDivisionError):
        loop.resume(result.run_dir, overrides={"logging_steps": 5})
    assert seen["every"] == 5  # --logging_steps is log.every, which a resumed run may change
    with pytest.raises(ConfigError, match="cannot be changed when resuming"):
        loop.resume(result.run_dir, overrides={"learning_rate": 1.0})


def test_mgda_reports_an_unweighted_mean(tiny_config):
    from raco.training.loop import train

    result = train(tiny_config(**{"train.max_steps": 1, "method.name": "mgda"}))
    final = result.final_metrics
    assert "eval/weighted_accuracy" not in final
    accuracies = [final[f"eval/{name}/rewards/accuracies"] for name in ("friendly", "concise")]
    assert final["eval/mean_accuracy"] == pytest.approx(sum(accuracies) / 2)


def test_output_dir_of_another_run_names_the_differences(tiny_config):
    from raco.training.loop import train

    first = train(tiny_config(**{"train.max_steps": 1}))
    with pytest.raises(
        ConfigError, match=r"holds another run \(method.name: 'raco' -> 'weighted_sum'"
    ) as err:
        train(tiny_config(**{"train.max_steps": 1, "method.name": "weighted_sum"}))
    assert "would continue that run with its own config" in str(err.value)
    with pytest.raises(ConfigError, match=r"already exists; continue it with `raco train --resume"):
        train(tiny_config(**{"train.max_steps": 1}))
    assert first.run_dir.is_dir()
