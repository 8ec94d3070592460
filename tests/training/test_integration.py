"""Integration: the tiny model trains with every method, the outputs load, faults leave checkpoints."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from raco.config import from_dict, method_plan
from raco.registry import METHOD_NAMES
from raco.training.checkpoint import latest_checkpoint
from raco.training.loop import TrainingStopped, run, run_evaluation, train
from raco.training.metrics import read_metrics
from raco.training.session import setup


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_weighted_heldout_accuracy_rises(method, tiny_config):
    tree = tiny_config(**{"method.name": method, "train.max_steps": 5})
    cfg = from_dict(tree)
    session = setup(cfg)
    score = "eval/mean_accuracy" if method == "mgda" else "eval/weighted_accuracy"  # mgda ignores w
    before = run_evaluation(session)[score]
    result = run(session)
    after = result.final_metrics[score]
    assert after > before and after >= 0.7, (before, after)
    records = read_metrics(result.run_dir)
    steps = [r for r in records if "friendly/loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5]
    expected = {
        "concise/loss",
        "friendly/rewards/accuracies",
        "concise/rewards/margins",
        "friendly/coef",
        "grad_norm",
        "learning_rate",
        "tokens_per_second",
        "clip_active",
        "skipped",
    }
    if method_plan(cfg).needs_reference([o.loss for o in cfg.objectives]):  # implicit rewards need π_ref
        expected |= {"friendly/rewards/chosen", "friendly/rewards/rejected"}
    assert expected <= set(steps[-1])
    assert "pareto_measure" in steps[-1] and "friendly|concise/grad_cosine" in steps[-1]
    weights = [0.5, 0.5] if method == "mgda" else cfg.weights  # `loss` = Σ w_i L_i (mgda: the mean)
    for record in steps:
        want = weights[0] * record["friendly/loss"] + weights[1] * record["concise/loss"]
        assert record["loss"] == pytest.approx(want, rel=1e-12)


def test_outputs_are_hugging_face_loadable(tiny_config):
    from transformers import AutoModelForCausalLM

    result = train(tiny_config(**{"train.max_steps": 2}))
    summary = json.loads(result.summary_file.read_text())
    assert summary["steps"] == 2 and summary["data"]["train_rows"] == 96
    assert summary["gradient_path"] == "fused"  # k = 2 with `auto` on a Llama
    assert {"config", "versions", "final_metrics", "data"} <= set(summary)
    loaded = AutoModelForCausalLM.from_pretrained(result.model_dir)
    saved = load_file(str(latest_checkpoint(result.run_dir) / "trainable.safetensors"))
    for name, param in loaded.named_parameters():
        assert torch.equal(param, saved[name]), name


def test_lora_adapter_reference_and_peft_output(tiny_config):
    from peft import PeftModel

    from raco.models.loading import tiny_random_model

    tree = tiny_config(**{"train.max_steps": 2, "lora.enabled": True, "lora.r": 4, "model.reference": "auto"})
    tree["lora"]["target_modules"] = ["q_proj", "v_proj"]
    result = train(tree)
    summary = json.loads(result.summary_file.read_text())
    assert summary["reference"] == "adapter"
    assert (result.model_dir / "adapter_model.safetensors").is_file()
    base = tiny_random_model(0, 49152)
    model = PeftModel.from_pretrained(base, result.model_dir)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # adapters were trained (B starts at 0)


def test_cached_reference_is_computed_once(tiny_config, tmp_path, monkeypatch):
    import raco.models.reference as reference

    monkeypatch.setattr(reference, "cache_dir", lambda: tmp_path / "cache")
    calls = []
    original = reference.compute_reference_table
    # shared_reference_table computes each process's block through this module's compute_reference_table
    monkeypatch.setattr(reference, "compute_reference_table", lambda *a: calls.append(1) or original(*a))
    first = train(tiny_config(**{"train.max_steps": 2, "model.reference": "cached"}))
    assert len(calls) == 2  # train and eval tables
    copy_run = tiny_config(**{"train.max_steps": 2, "output_dir": str(tmp_path / "copy")})
    second = train(
        tiny_config(
            **{"train.max_steps": 2, "model.reference": "cached", "output_dir": str(tmp_path / "again")}
        )
    )
    assert len(calls) == 2  # a second run (e.g. of a sweep) reuses the cache
    assert len(list((tmp_path / "cache" / "reference-logps").glob("*.safetensors"))) == 2
    baseline = train(copy_run)  # same losses as a frozen-copy reference
    for key in ("friendly/loss", "concise/loss"):
        assert first.final_metrics[key] == pytest.approx(baseline.final_metrics[key], rel=1e-4)
        assert second.final_metrics[key] == pytest.approx(first.final_metrics[key], rel=1e-6)


def test_lora_runs_that_differ_by_seed_share_one_cached_table(tiny_config, tmp_path, monkeypatch):
    """The LoRA reference is the adapter-disabled model: the adapters' seed-dependent random start is not
    in the table's key, so a second seed reuses the first seed's tables — and trains exactly as with
    the live adapter-disabled reference."""
    import raco.models.reference as reference

    monkeypatch.setattr(reference, "cache_dir", lambda: tmp_path / "cache")
    calls = []
    original = reference.compute_reference_table
    monkeypatch.setattr(reference, "compute_reference_table", lambda *a: calls.append(1) or original(*a))

    def lora_run(seed: int, kind: str, name: str):
        tree = tiny_config(
            **{
                "train.max_steps": 2,
                "train.seed": seed,
                "lora.enabled": True,
                "lora.r": 4,
                "model.reference": kind,
                "output_dir": str(tmp_path / name),
            }
        )
        tree["lora"]["target_modules"] = ["q_proj", "v_proj"]
        return train(tree)

    lora_run(0, "cached", "seed0")
    assert len(calls) == 2  # train and eval tables
    cached = lora_run(1, "cached", "seed1")
    assert len(calls) == 2  # seed 1 reads seed 0's tables
    assert len(list((tmp_path / "cache" / "reference-logps").glob("*.safetensors"))) == 2
    live = lora_run(1, "adapter", "seed1-live")
    for key in ("friendly/loss", "concise/loss"):
        assert cached.final_metrics[key] == pytest.approx(live.final_metrics[key], rel=1e-5)
    assert (
        cached.final_metrics["friendly/loss"]
        != lora_run(0, "adapter", "seed0-live").final_metrics["friendly/loss"]
    )  # the seeds did train differently


def test_non_finite_steps_are_skipped_then_stop_with_checkpoint(tiny_config):
    tree = tiny_config(**{"train.max_steps": 6, "train.max_consecutive_skips": 2})
    session = setup(from_dict(tree))
    with torch.no_grad():
        session.model.model.norm.weight.fill_(float("nan"))
    with pytest.raises(TrainingStopped, match="2 consecutive steps"):
        run(session)
    records = read_metrics(session.run_dir)
    assert [r["skipped"] for r in records] == [1.0, 1.0]
    assert latest_checkpoint(session.run_dir).name == "step-00000002"


def test_ctrl_c_leaves_a_resumable_checkpoint(tiny_config):
    def interrupt(step, metrics):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    tree = tiny_config(**{"train.max_steps": 5})
    with pytest.raises(KeyboardInterrupt):
        train(tree, on_step=interrupt)
    from pathlib import Path

    assert latest_checkpoint(Path(tree["output_dir"])).name == "step-00000002"


def test_tensorboard_tracker_receives_the_metrics(tiny_config):
    """`log.log_with: [tensorboard]` goes through accelerate's tracker: event files with our scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tiny_config(**{"train.max_steps": 2, "log.log_with": "tensorboard"}))
    (events,) = (result.run_dir / "raco").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"friendly/loss", "concise/coef", "pareto_measure", "learning_rate"} <= tags
    assert [e.step for e in accumulator.Scalars("friendly/loss")] == [1, 2]


def test_out_of_memory_leaves_a_resumable_checkpoint(tiny_config, monkeypatch):
    """An OOM in step 3 stops the run with a checkpoint of step 2 (the failed step leaves nothing
    behind); resuming finishes the run with the losses an uninterrupted run logs."""
    from raco.training.loop import resume

    tree = tiny_config(**{"train.max_steps": 4})
    uninterrupted = {**tree, "output_dir": tree["output_dir"] + "-uninterrupted"}
    reference = read_metrics(train(uninterrupted).run_dir)
    session = setup(from_dict(tree))
    accumulate = session.engine.accumulate
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # one micro-batch per step: the first one of step 3
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return accumulate(*args, **kwargs)

    monkeypatch.setattr(session.engine, "accumulate", flaky)
    with pytest.raises(TrainingStopped, match="out of memory at step 3; resumable checkpoint"):
        run(session)
    assert latest_checkpoint(session.run_dir).name == "step-00000002"
    resumed = read_metrics(resume(session.run_dir).run_dir)
    losses = [(r["step"], r["friendly/loss"]) for r in resumed if "friendly/loss" in r]
    expected = [(r["step"], r["friendly/loss"]) for r in reference if "friendly/loss" in r]
    assert losses == expected
