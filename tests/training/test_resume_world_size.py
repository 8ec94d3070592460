"""A checkpoint resumed on another number of processes, with the same global batches: 2 FSDP2
processes (sharded checkpoint) resumed on 1 process, and 1 process (unsharded checkpoint) resumed on
2 FSDP2 processes, end as the uninterrupted runs: every metrics line (losses, coefficients, Gram,
rewards, held-out metrics) and the final weights within relative 1e-5. Another global batch, a
per-process solve, and dropout are refused or warned about, naming what to set."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from dist_train_worker import cut_back
from launch import TORCHRUN, one_thread, run_two_processes
from safetensors.torch import load_file
from torch import nn
from toy_data import tiny_tree, write_toy

from raco.config import ConfigError
from raco.training.checkpoint import BatchLayout, check_layout, list_checkpoints, random_draws
from raco.training.loop import resume, train
from raco.training.metrics import read_metrics

WORKER = Path(__file__).with_name("resume_world_size_worker.py")
WALL_CLOCK = {"tokens_per_second"}
CUT_AT = 2  # the checkpoint the runs are resumed from (of 4 steps)
HALF_BATCH = 4  # train.batch_size of the 2-process runs (the worker's), 8 on 1 process


def _tree(root: Path, name: str, batch_size: int) -> dict:
    """4 steps of 2 micro-batches of ``batch_size × processes`` = 8 pairs; checkpoints at 2 and 4."""
    files = (write_toy(root / "train.jsonl", 96, 0, ties=0.3), write_toy(root / "eval.jsonl", 16, 1))
    return tiny_tree(
        *files,
        root / name,
        **{
            "train.max_steps": 4,
            "train.batch_size": batch_size,
            "train.grad_accum": 2,
            "train.save_every": CUT_AT,
            "train.eval_every": 2,
            "train.eval_batch_size": 8,
        },
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """``two``: 2 FSDP2 processes, uninterrupted; ``one``: 1 process, uninterrupted; ``one-to-two``:
    ``one`` cut back to step 2 and resumed on 2 processes; ``two-to-one``: ``two`` cut back to step 2
    and resumed on 1 process."""
    root = tmp_path_factory.mktemp("resume-world-size")
    (root / "two.yaml").write_text(yaml.safe_dump(_tree(root, "two", HALF_BATCH)))
    with one_thread():  # as the workers run
        train(_tree(root, "one", 2 * HALF_BATCH))
    cut_back(root / "one", CUT_AT, root / "one-to-two")
    run_two_processes(WORKER, root)
    cut_back(root / "two", CUT_AT, root / "two-to-one")
    with one_thread():
        resume(root / "two-to-one", overrides={"train.batch_size": 2 * HALF_BATCH})
    return root


def _lines(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in read_metrics(run_dir)]


def _assert_same_run(straight: Path, resumed: Path) -> None:
    a, b = _lines(straight), _lines(resumed)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert max(r["step"] for r in b) == 4
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys(), x["step"]
        for key, value in x.items():
            if isinstance(value, float):
                assert y[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (x["step"], key)
            else:
                assert y[key] == value, (x["step"], key)
    wa = load_file(str(straight / "model" / "model.safetensors"))
    wb = load_file(str(resumed / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key, p in wa.items():
        assert float((p - wb[key]).norm() / p.norm().clamp(min=1e-30)) < 1e-5, key
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["steps"] == 4


pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")


def test_two_fsdp2_processes_resumed_on_one_equal_the_uninterrupted_run(runs):
    assert (list_checkpoints(runs / "two")[0] / "sharded").is_dir()  # DCP shards, resharded on load
    _assert_same_run(runs / "two", runs / "two-to-one")
    config = yaml.safe_load((runs / "two-to-one" / "config.yaml").read_text())
    assert config["train"]["batch_size"] == 2 * HALF_BATCH  # the accepted override is the run's now


def test_one_process_resumed_on_two_fsdp2_processes_equals_the_uninterrupted_run(runs):
    assert (list_checkpoints(runs / "one")[0] / "trainable.safetensors").is_file()  # unsharded
    _assert_same_run(runs / "one", runs / "one-to-two")


def test_another_global_batch_is_refused_before_anything_changes(runs, tmp_path):
    """2 → 1 process without the batch size that keeps the global batch: refused, naming it; the run
    directory (config.yaml included) is left as it was, and resumes once given the right one."""
    run_dir = tmp_path / "run"
    cut_back(runs / "two", CUT_AT, run_dir)
    config = (run_dir / "config.yaml").read_text()
    for overrides in ({}, {"train.batch_size": 6}):
        with pytest.raises(ConfigError) as caught:
            resume(run_dir, overrides=overrides)
        message = str(caught.value)
        assert "written by 2 processes with train.batch_size 4: global micro-batches of 8 pairs" in message
        assert "resume with --train.batch_size 8 (8 pairs over 1 process)" in message
        assert (run_dir / "config.yaml").read_text() == config
    assert [p.name for p in list_checkpoints(run_dir)] == [f"step-{CUT_AT:08d}"]


def _state(processes: int = 2, batch_size: int = 4) -> dict:
    return {"step": 2, "processes": processes, "batch_size": batch_size}


def test_layout_rule(tmp_path, caplog):
    """check_layout alone: which resumes are accepted, refused (and what the message says to set),
    warned about."""
    check_layout(tmp_path, _state(), 2, BatchLayout(batch_size=4))  # as written
    check_layout(tmp_path, _state(), 1, BatchLayout(batch_size=8))  # the same global micro-batch
    check_layout(tmp_path, _state(), 4, BatchLayout(batch_size=2))
    with pytest.raises(ConfigError, match=r"resume with --train.batch_size 4 "):
        check_layout(tmp_path, _state(), 2, BatchLayout(batch_size=2))  # another batch, same processes
    with pytest.raises(ConfigError, match=r"no train.batch_size gives 8 pairs over 3 processes.*1, 2, 4, 8"):
        check_layout(tmp_path, _state(), 3, BatchLayout(batch_size=3))
    with pytest.raises(ConfigError, match=r"solve_per: microbatch each process solves"):
        check_layout(tmp_path, _state(), 1, BatchLayout(batch_size=8, rank_local_solve=True))
    check_layout(tmp_path, _state(), 2, BatchLayout(batch_size=4, rank_local_solve=True))
    with caplog.at_level(logging.WARNING, logger="raco"):
        check_layout(tmp_path, _state(), 1, BatchLayout(batch_size=8, random_draws=True))
        assert "the dropout draws, and so the numbers, will differ" in caplog.text
        caplog.clear()  # the same processes restore each one's own random state: no notice
        check_layout(tmp_path, _state(), 2, BatchLayout(batch_size=4, random_draws=True))
        check_layout(tmp_path, _state(), 1, BatchLayout(batch_size=8))  # nothing random
        assert not caplog.records
    # no batch size in state.json: the checkpoint's config.yaml says; neither: the same processes only
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": {"batch_size": 4}}))
    check_layout(tmp_path, {"processes": 2}, 1, BatchLayout(batch_size=8))
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(ConfigError, match=r"written by 2 processes; resume it with 2"):
        check_layout(tmp_path, {"processes": 2}, 1, BatchLayout(batch_size=8))
    with pytest.raises(ConfigError, match=r"written by 2 processes; resume it with 2"):
        check_layout(tmp_path, _state(), 1, None)


def test_random_draws_finds_dropout():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.0))
    assert not random_draws(model)
    model[1].p = 0.1
    assert random_draws(model)
    model[1].p = 0.0
    model[0].attention_dropout = 0.2  # as attention modules keep their functional rate
    assert random_draws(model)
