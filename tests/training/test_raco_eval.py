"""`raco eval` end to end: load_run rebuilds the trained model (its held-out metrics equal training's),
the base is the starting model (accuracy exactly 0.5: ties count half), summaries follow from the
per-prompt scores, files are identical on a second evaluation, and bad input is one paragraph."""

from __future__ import annotations

import json
import math

import pytest
import torch

from raco.cli import main
from raco.eval.config import load_eval_config
from raco.eval.load import load_run
from raco.eval.runner import EVAL_FILE, GENERATIONS_FILE, evaluate_target
from raco.training.loop import train
from raco.training.metrics import read_metrics

SCORER_FILE = """
def exclamations(prompts, responses):
    return [float(r.count("!")) + 0.5 * len(r) for r in responses]
"""


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, toy_files):
    from toy_data import tiny_tree

    root = tmp_path_factory.mktemp("eval-run")
    tree = tiny_tree(*toy_files, root / "run", **{"train.max_steps": 3, "lora.enabled": True, "lora.r": 4})
    tree["model"]["reference"] = "auto"
    tree["lora"]["target_modules"] = ["q_proj", "v_proj"]
    tree["train"]["lr"] = 3e-2
    return train(tree)


def _config(tmp_path, **overrides):
    scorer = tmp_path / "my_scores.py"
    scorer.write_text(SCORER_FILE)
    return load_eval_config(
        None,
        {
            "objectives.short.scorer": "length:unit=characters",
            "objectives.short.direction": "lower",
            "objectives.excited.scorer": f"python:function={scorer}:exclamations",
            "generation.max_new_tokens": "6",
            "generation.do_sample": "true",
            "generation.seed": "3",
            "prompts.max_prompts": "5",
            **overrides,
        },
    )


def test_eval_of_a_lora_run(lora_run, tmp_path):
    cfg = _config(tmp_path)
    result = evaluate_target(lora_run.run_dir, cfg, tmp_path / "out", progress=False)
    assert result["models"] == ["tuned", "base"] and result["prompts"] == 5
    # the tuned model is the trained one: its held-out metrics are those training logged at its end
    final = lora_run.final_metrics
    for name in ("friendly", "concise"):
        for metric in ("rewards/accuracies", "loss"):
            assert result["preference"]["tuned"][f"{name}/{metric}"] == pytest.approx(
                final[f"eval/{name}/{metric}"], rel=1e-5
            )
        # the base is π_ref itself: every implicit reward is 0, every pair a tie counted half
        assert result["preference"]["base"][f"{name}/rewards/accuracies"] == 0.5
        assert result["preference"]["base"][f"{name}/rewards/margins"] == 0.0
    lines = [json.loads(line) for line in (tmp_path / "out" / GENERATIONS_FILE).read_text().splitlines()]
    assert len(lines) == 10 and {line["model"] for line in lines} == {"tuned", "base"}
    by = {(line["index"], line["model"]): line for line in lines}
    for (_, _), line in by.items():
        assert line["scores"]["short"] == len(line["response"])  # written-out scorer
        assert line["scores"]["excited"] == line["response"].count("!") + 0.5 * len(line["response"])
    tuned = [by[i, "tuned"]["scores"]["short"] for i in range(5)]
    base = [by[i, "base"]["scores"]["short"] for i in range(5)]
    short = result["objectives"]["short"]
    assert short["tuned"] == pytest.approx(sum(tuned) / 5) and short["base"] == pytest.approx(sum(base) / 5)
    assert short["improvement"] == pytest.approx(short["base"] - short["tuned"])  # lower is better
    pairs = list(zip(tuned, base, strict=True))
    wins = sum(t < b for t, b in pairs) + 0.5 * sum(t == b for t, b in pairs)
    assert short["win_rate"] == pytest.approx(wins / 5)
    relative = [o["relative_improvement"] for o in result["objectives"].values()]
    assert result["worst_case_relative_improvement"] == min(r for r in relative if r is not None)
    assert json.loads((tmp_path / "out" / EVAL_FILE).read_text()) == json.loads(json.dumps(result))


def test_same_seed_same_files(lora_run, tmp_path):
    cfg = _config(tmp_path, **{"preference": "false"})
    evaluate_target(lora_run.run_dir, cfg, tmp_path / "a", progress=False)
    evaluate_target(lora_run.run_dir, cfg, tmp_path / "b", progress=False)
    for name in (GENERATIONS_FILE, EVAL_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_full_run_base_is_the_initial_weights(tiny_config, tmp_path):
    result = train(tiny_config(**{"train.max_steps": 2}))
    cfg = load_eval_config(None, {"preference": "true"})  # no objectives: preference metrics only
    out = evaluate_target(result.run_dir, cfg, tmp_path / "out", progress=False)
    for name in ("friendly", "concise"):
        key = f"{name}/rewards/accuracies"
        assert out["preference"]["tuned"][key] == pytest.approx(result.final_metrics[f"eval/{key}"], rel=1e-5)
        assert out["preference"]["base"][key] == 0.5


def test_cli_writes_and_prints(lora_run, tmp_path, capsys):
    out = tmp_path / "cli"
    flags = ["--objectives.short.scorer", "length:unit=words", "--generation.max_new_tokens", "4"]
    flags += ["--prompts.max_prompts", "3", "--quiet", "--no-base"]
    status = main(["eval", str(lora_run.run_dir), *flags, "--output", str(out)])
    assert status == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "short" in printed and "held-out preference accuracy (tuned)" in printed
    result = json.loads((out / EVAL_FILE).read_text())
    assert result["models"] == ["tuned"] and not math.isnan(result["objectives"]["short"]["tuned"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objectives.a.scorer", "lenght"], "did you mean `length`"),
        (["--objectives.a.scorer", "length", "--objectives.a.direction", "up"], "objectives.a.direction"),
        (["--generation.top_p", "0"], "generation.top_p"),
        (["--promts.max_prompts", "3"], "did you mean `prompts.max_prompts`"),
    ],
)
def test_bad_configuration_is_one_paragraph_before_any_model_loads(tmp_path, capsys, args, message):
    status = main(["eval", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_targets(tmp_path, lora_run, capsys):
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "empty")], "neither a raco run directory"),
        (["smollm2-135m-instruct", "--objectives.a.scorer", "length"], "give the prompts to answer"),
        ([str(lora_run.run_dir), "--base"], "not empty"),
    ]
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    for args, message in cases:
        out = occupied if "--base" in args else tmp_path / "o"
        status = main(["eval", *args, "--output", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert status == 2 and message in err and "Traceback" not in err, err


def test_eval_of_the_bundled_smollm2_on_a_prompts_file(tmp_path, capsys):
    """A model target (the offline alias): its own answers to a prompts file, scored against the
    file's reference answers; no base, no preference metrics (not a run)."""
    prompts = tmp_path / "prompts.jsonl"
    rows = [
        {"question": "What is the capital of France?", "answer": "Paris"},
        {"question": "Name a primary colour.", "answer": "Red"},
    ]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    flags = ["--prompts.path", str(prompts), "--prompts.column", "question"]
    flags += ["--prompts.reference_column", "answer", "--generation.max_new_tokens", "8"]
    flags += ["--generation.chat_template", "true", "--objectives.overlap.scorer", "rouge:type=rouge1"]
    flags += ["--objectives.words.scorer", "length:unit=words", "--quiet"]
    status = main(["eval", "smollm2-135m-instruct", *flags, "--output", str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "out" / EVAL_FILE).read_text())
    assert result["models"] == ["tuned"] and result["preference"] == {}
    lines = [json.loads(line) for line in (tmp_path / "out" / GENERATIONS_FILE).read_text().splitlines()]
    assert [line["reference"] for line in lines] == ["Paris", "Red"]
    assert "Paris" in lines[0]["response"]  # the model answers (greedy, 8 tokens)
    assert lines[0]["scores"]["overlap"] > 0 and 1 <= lines[0]["scores"]["words"] <= 8


def test_generation_judged_during_training_matches_raco_eval(tiny_config, tmp_path):
    """eval.generate_every logs eval/<objective>/score at its steps and at the end; the final value is
    what `raco eval` computes for the finished run with the same prompts and settings."""
    judged = [{"name": "chars", "scorer": "length:unit=characters", "direction": "lower"}]
    tree = tiny_config(**{"train.max_steps": 3, "eval.generate_every": 2, "eval.max_prompts": 3})
    tree["eval"].update(objectives=judged, generation={"max_new_tokens": 5})
    result = train(tree)
    scored = [r for r in read_metrics(result.run_dir) if "eval/chars/score" in r]
    assert [r["step"] for r in scored] == [2, 3]  # every 2 steps, and at the end
    final = result.final_metrics["eval/chars/score"]
    assert json.loads(result.summary_file.read_text())["final_metrics"]["eval/chars/score"] == final
    cfg = load_eval_config(
        None,
        {
            "objectives.chars.scorer": "length:unit=characters",
            "generation.max_new_tokens": "5",
            "prompts.max_prompts": "3",
            "preference": "false",
            "base": "false",
        },
    )
    evaluated = evaluate_target(result.run_dir, cfg, tmp_path / "out", progress=False)
    assert evaluated["objectives"]["chars"]["tuned"] == pytest.approx(final, rel=1e-12)


def test_generate_every_needs_objectives_and_held_out_prompts(tiny_config):
    from raco.config import ConfigError

    with pytest.raises(ConfigError, match=r"give eval\.objectives"):
        train(tiny_config(**{"eval.generate_every": 1}))
    tree = tiny_config(**{"eval.generate_every": 1, "data.eval": None, "data.eval_fraction": 0.0})
    tree["eval"]["objectives"] = [{"name": "n", "scorer": "length"}]
    with pytest.raises(ConfigError, match="no held-out prompts"):
        train(tree)


def test_full_run_preference_metrics_without_the_base_evaluation(tiny_config, tmp_path):
    """--no-base still loads the initial weights of a full fine-tuning run: they are its reference."""
    result = train(tiny_config(**{"train.max_steps": 2, "model.reference": "cached"}))
    out = evaluate_target(
        result.run_dir, load_eval_config(None, {"base": "false"}), tmp_path / "o", progress=False
    )
    key = "friendly/rewards/accuracies"
    assert out["models"] == ["tuned"]
    assert out["preference"]["tuned"][key] == pytest.approx(result.final_metrics[f"eval/{key}"], rel=1e-5)


@pytest.mark.parametrize("merge", [True, False])
def test_an_exported_folder_answers_as_its_run(lora_run, tmp_path, merge):
    """`raco export` output (a merged transformers folder, or the adapter on its recorded base) is a
    model target whose greedy answers score as the run's own tuned model does."""
    from raco.export import export

    folder = export(lora_run.run_dir, tmp_path / "exported", merge=merge).output
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"Say something about {t}."}) + "\n" for t in ("rain", "tea"))
    )
    settings = {"objectives.chars.scorer": "length:unit=characters", "generation.max_new_tokens": "6"}
    settings |= {"prompts.path": str(prompts), "preference": "false", "base": "false"}
    from_run = evaluate_target(
        lora_run.run_dir, load_eval_config(None, settings), tmp_path / "a", progress=False
    )
    from_export = evaluate_target(folder, load_eval_config(None, settings), tmp_path / "b", progress=False)
    answers = [
        [json.loads(line)["response"] for line in (tmp_path / d / GENERATIONS_FILE).read_text().splitlines()]
        for d in ("a", "b")
    ]
    assert answers[0] == answers[1]
    assert from_run["objectives"]["chars"]["tuned"] == from_export["objectives"]["chars"]["tuned"]


def test_a_bfloat16_run_is_loaded_as_it_trained(tiny_config):
    """model.dtype bfloat16 trains float32 master weights (mixed precision): raco eval loads the tuned
    policy and its base in float32, as training held them, not rounded to bfloat16."""
    result = train(tiny_config(**{"train.max_steps": 1, "model.dtype": "bfloat16"}))
    loaded = load_run(result.run_dir)
    assert {p.dtype for p in loaded.policy.parameters()} == {torch.float32}
    assert {p.dtype for p in loaded.base_policy.parameters()} == {torch.float32}
