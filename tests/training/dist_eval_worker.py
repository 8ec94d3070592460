"""Worker of test_distributed_eval: ``torchrun --nproc_per_node 2 dist_eval_worker.py DIR``.

In one launch: (1) held-out evaluation and judged generation of a tiny-random model, shared by the
two processes, written by each to ``DIR/replicated-<rank>.json``; (2) the same with the model sharded
by FSDP2 (``fully_shard``: every forward pass a collective, shares of unequal length) to
``DIR/sharded-<rank>.json``; (3) the training run ``DIR/run.yaml``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from unittest import mock

import torch.distributed as dist
from shard_fixtures import EVAL_BATCH, Toy, toy
from torch.distributed.fsdp import fully_shard

from raco.eval.generate import TransformersBackend
from raco.training.evaluate import evaluate
from raco.training.inputs import eval_batches
from raco.training.loop import train


def outcome(made: Toy) -> dict:
    """Held-out preference metrics, the judge's answers and its scores, and how much of the work this
    process did: evaluation batches it ran (its share and a lockstep repeat) and prompts it answered."""
    prepared: list[int] = []
    batches = eval_batches(made.data.eval, made.collate, EVAL_BATCH)
    metrics = evaluate(
        made.model,
        batches,
        made.specs(),
        made.cfg.weights,
        made.reference,
        prepare=lambda batch: prepared.append(len(batch["signs"])) or batch,
    )
    judge = made.judge()
    generated: list[int] = []
    original = TransformersBackend.generate_batches

    def counting(self, encoded, batches, *args, **kwargs):
        generated.extend(len(rows) for rows in batches)
        return original(self, encoded, batches, *args, **kwargs)

    with mock.patch.object(TransformersBackend, "generate_batches", counting):
        answers = judge.answers(made.model, made.tokenizer)
    metrics.update(judge.metrics(made.model, made.tokenizer, contextlib.nullcontext))
    return {"metrics": metrics, "answers": answers, "eval_batches": len(prepared), "prompts": sum(generated)}


def main(root: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    made = toy(root / f"data-{rank}")
    (root / f"replicated-{rank}.json").write_text(json.dumps(outcome(made)))
    for layer in made.model.model.layers:
        fully_shard(layer)
    fully_shard(made.model)
    (root / f"sharded-{rank}.json").write_text(json.dumps(outcome(made)))
    dist.barrier()
    train(root / "run.yaml")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
