"""The loop under two processes (torchrun, gloo): every logged metric is that of the global batch
(equal to one process on the same global batches), and a resumed run restores every process's own
random state (LoRA dropout), so it equals the uninterrupted one bit for bit.

One torchrun launch (``dist_train_worker.py``) serves both tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from dist_train_worker import RESUME_FROM, non_finite_at
from launch import TORCHRUN, run_two_processes
from safetensors.torch import load_file
from toy_data import tiny_tree, write_toy

from raco.config import ConfigError, from_dict
from raco.training.checkpoint import list_checkpoints, read_checkpoint
from raco.training.inputs import step_micro_batches
from raco.training.loop import run
from raco.training.metrics import read_metrics
from raco.training.session import setup

WORKER = Path(__file__).with_name("dist_train_worker.py")
WALL_CLOCK = {"tokens_per_second"}  # its definition is checked in test_every_metric_is_global

pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not available")


def _configs(root: Path) -> dict[str, dict]:
    """``global``: 2 processes × 2 micro-batches × 4 pairs per step; ``one``: the same 16 rows per step
    as 1 micro-batch of 1 process; ``dropout``: LoRA with dropout, checkpoints every 2 steps."""
    # ties (s = 0) make the rows with s ≠ 0 differ between processes and micro-batches
    files = (
        write_toy(root / "train.jsonl", 96, 0, ties=0.3),
        write_toy(root / "eval.jsonl", 16, 1, ties=0.3),
    )
    common = {"train.eval_every": 2, "train.eval_batch_size": 8}
    lora = {
        "lora.enabled": True,
        "lora.r": 4,
        "lora.dropout": 0.3,
        "lora.target_modules": ["q_proj", "v_proj"],
        "model.reference": "auto",  # the fused path (auto), verified on each segment's first micro-batch
    }
    return {
        "global": tiny_tree(
            *files,
            root / "global",
            **common,
            **{"train.max_steps": 3, "train.batch_size": 4, "train.grad_accum": 2},
        ),
        "one": tiny_tree(*files, root / "one", **common, **{"train.max_steps": 3, "train.batch_size": 16}),
        "dropout": tiny_tree(
            *files,
            root / "dropout",
            **common,
            **lora,
            **{"train.max_steps": 4, "train.batch_size": 4, "train.save_every": 2, "train.keep_last": 3},
        ),
    }


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The worker's run directories (under the returned root) and the configs."""
    root = tmp_path_factory.mktemp("two-processes")
    configs = _configs(root)
    for name in ("global", "dropout"):
        (root / f"{name}.yaml").write_text(yaml.safe_dump(configs[name]))
    run_two_processes(WORKER, root)
    return root, configs


def _numeric(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_every_metric_is_global(two_processes):
    """Every numeric value of every metrics.jsonl line — training steps, the skipped step 2, held-out
    evaluations — equals the 1-process run on the same global batches: a metric computed per process
    (or averaged over micro-batches) fails here by its name."""
    root, configs = two_processes
    with non_finite_at(2):
        session = setup(from_dict(configs["one"]))
        run(session)
    one, two = read_metrics(session.run_dir), read_metrics(root / "global")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3, 3]
    assert [r.get("skipped") for r in one] == [0.0, 1.0, 0.0, None]
    for a, b in zip(one, two, strict=True):
        assert a.keys() == b.keys(), a["step"]
        for key in a.keys() - WALL_CLOCK:
            if _numeric(a[key]):
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
            else:
                assert b[key] == a[key], (a["step"], key)  # "nan" of the skipped step's grad_norm
    # tokens: the non-padding tokens of the whole global batch; tokens_per_second divides them by the
    # step's wall time
    counts = set()
    for record in (r for r in one if "tokens" in r):
        (rows,) = step_micro_batches(session.data.train, session.plan, record["step"] - 1, 0, 0)
        assert record["tokens"] == int(session.collator(rows)["attention_mask"].sum())
        # the 2-process run's micro-batches are the 4-row quarters of ``rows``
        counts |= {
            tuple(sum(abs(p["signs"][i]) for p in rows[q : q + 4]) for i in range(2)) for q in (0, 4, 8, 12)
        }
    assert len(counts) > 1  # rows with s ≠ 0 differ between processes and micro-batches
    for record in (r for r in two if "tokens" in r):
        assert 0 < record["tokens"] / record["tokens_per_second"] < 60


def test_resume_restores_each_process_random_state(two_processes):
    """2-process LoRA with dropout, resumed from its step-2 checkpoint: every metrics line and the final
    adapter equal the uninterrupted run bit for bit; the checkpoint holds one state per process."""
    root, _ = two_processes
    straight, resumed = root / "dropout", root / "dropout-resumed"
    checkpoint = list_checkpoints(resumed)[0]
    assert checkpoint.name == f"step-{RESUME_FROM:08d}"
    states = [read_checkpoint(checkpoint, rank, 2)["rng"] for rank in (0, 1)]
    assert not torch.equal(states[0]["cpu"], states[1]["cpu"])  # dropout drew differently per process

    def lines(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in read_metrics(run_dir)]

    assert max(r["step"] for r in lines(resumed)) == 4
    assert lines(resumed) == lines(straight)
    a = load_file(str(straight / "model" / "adapter_model.safetensors"))
    b = load_file(str(resumed / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # resuming with another number of processes is refused, before anything is restored
    with pytest.raises(ConfigError, match="written by 2 processes; resume it with 2"):
        read_checkpoint(checkpoint, 0, 1)
