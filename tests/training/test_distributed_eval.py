"""Evaluation shared by two processes (torchrun, gloo) and gathered: every held-out number — the
preference metrics and the judged generations' scores — equals the 1-process one exactly, with the
model replicated and sharded by FSDP2, and in the metrics.jsonl of a training run."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import yaml
from launch import TORCHRUN, one_thread, run_two_processes
from shard_fixtures import EVAL_BATCH, GENERATION, toy
from toy_data import tiny_tree, write_toy

from raco.training.evaluate import evaluate
from raco.training.inputs import eval_batches
from raco.training.loop import train
from raco.training.metrics import read_metrics

WORKER = Path(__file__).with_name("dist_eval_worker.py")

pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")


def _run_tree(root: Path, run_dir: Path, processes: int) -> dict:
    """A run whose weights never move (lr 1e-30 is below every weight's rounding), so that 1 and 2
    processes evaluate the same weights at every step: any difference is the evaluation's. SimPO's
    reference-free rewards (β·π/n) make the held-out numbers other than a policy equal to π_ref's."""
    files = write_toy(root / "train.jsonl", 96, 0, ties=0.3), write_toy(root / "eval.jsonl", 16, 1, ties=0.3)
    tree = tiny_tree(
        *files,
        run_dir,
        **{
            "train.lr": 1e-30,
            "train.max_steps": 2,
            "train.batch_size": 8 // processes,
            "train.eval_every": 1,
            "train.eval_batch_size": EVAL_BATCH,
            "eval.generate_every": 1,
            "eval.max_prompts": 8,
        },
    )
    for objective in tree["objectives"]:
        objective["loss"] = "simpo"
    tree["eval"].update(
        objectives=[{"name": "chars", "scorer": "length:unit=characters"}],
        generation={
            k: getattr(GENERATION, k)
            for k in ("max_new_tokens", "do_sample", "temperature", "seed", "batch_size")
        },
    )
    return tree


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval-two-processes")
    (root / "run.yaml").write_text(yaml.safe_dump(_run_tree(root / "files", root / "run", 2)))
    run_two_processes(WORKER, root)
    return root


def test_shared_evaluation_equals_one_process(two_processes, tmp_path):
    made = toy(tmp_path)
    with one_thread():
        batches = eval_batches(made.data.eval, made.collate, EVAL_BATCH)
        metrics = evaluate(made.model, batches, made.specs(), made.cfg.weights, made.reference)
        judge = made.judge()
        answers = judge.answers(made.model, made.tokenizer)
        metrics.update(judge.metrics(made.model, made.tokenizer, contextlib.nullcontext))
    assert len(answers) == len(made.data.eval_prompts) == 7 and len(set(answers)) > 1
    assert any(0 < metrics[f"eval/{o}/pairs"] < 16 for o in ("friendly", "concise"))  # ties left out
    # 3 held-out batches: process 0 runs batches 0 and 2, process 1 batch 1 and a repeat (lockstep);
    # 3 generation batches of 3, 3 and 1 prompts: process 0 answers 4 prompts, process 1 answers 3
    # (and, when sharded, repeats batch 0 while the other generates: every forward is a collective)
    work = {"replicated": [(2, 4), (2, 3)], "sharded": [(2, 4), (2, 6)]}
    for mode in ("replicated", "sharded"):
        for rank in (0, 1):
            got = json.loads((two_processes / f"{mode}-{rank}.json").read_text())
            assert got["answers"] == answers, (mode, rank)
            assert got["metrics"] == metrics, (mode, rank)
            assert (got["eval_batches"], got["prompts"]) == work[mode][rank], (mode, rank)


def test_logged_evaluations_equal_one_process(two_processes, tmp_path):
    """Every eval/* value of every metrics.jsonl record (preference metrics and judged scores, at each
    step and at the end) equals the 1-process run's."""
    with one_thread():
        one = train(_run_tree(two_processes / "files", tmp_path / "one", 1))
    mine = [r for r in read_metrics(one.run_dir) if any(k.startswith("eval/") for k in r)]
    theirs = [r for r in read_metrics(two_processes / "run") if any(k.startswith("eval/") for k in r)]
    assert [r["step"] for r in mine] == [r["step"] for r in theirs] == [1, 2]
    for a, b in zip(mine, theirs, strict=True):
        evals = {k: v for k, v in a.items() if k.startswith("eval/")}
        assert "eval/chars/score" in evals and 0 < evals["eval/weighted_accuracy"] != 0.5
        assert {k: v for k, v in b.items() if k.startswith("eval/")} == evals, a["step"]
