"""Worker of test_collective_devices: ``torchrun --nproc_per_node 2 collectives_worker.py OUT DEVICE``.

Every collective of ``torch.distributed`` (and of ``distributed_c10d``, which the object collectives
call) is wrapped so that each call records the devices of the tensors it was given; then the engine
runs one step on each path (fused, plain, scalarized, per-micro-batch solving, FSDP2-sharded fused) and
``raco.train`` runs a short training (metrics all-reduce, evaluation, checkpoints). Each rank writes
``OUT/calls-RANK.json``: ``[[collective, [device, ...]], ...]`` and ``OUT/expected-RANK.json``, the
device DEVICE means on that rank (``cuda`` → ``cuda:LOCAL_RANK``). benchmarks/gpu_check.sh runs it
with DEVICE=cuda.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from exits import exit_now
from torch import Tensor

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "engine"), str(TESTS / "training")]

COLLECTIVES = (
    "all_reduce",
    "reduce_scatter_tensor",
    "all_gather_into_tensor",
    "all_gather_single",  # FSDP2's all-gather (torch ≥ 2.12)
    "reduce_scatter_single",
    "broadcast",
    "all_gather",
    "reduce_scatter",
    "gather",
    "scatter",
    "reduce",
    "all_to_all_single",
)
CALLS: list[tuple[str, list[str]]] = []
ENGINE_CALLS: dict[
    str, int
] = {}  # engine run → collectives it issued (bucketing: a handful, not per parameter)


def _tensors(value) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


def patch_collectives() -> None:
    """Record the tensors' devices on every call of every collective, then make the call."""
    from torch.distributed import distributed_c10d

    for name in COLLECTIVES:
        original = getattr(distributed_c10d, name, None)
        if original is None:  # not in this torch
            continue

        @functools.wraps(original)
        def recorded(*args, _name=name, _original=original, **kwargs):
            tensors = _tensors(list(args)) + _tensors(list(kwargs.values()))
            CALLS.append((_name, [str(t.device) for t in tensors]))
            return _original(*args, **kwargs)

        setattr(distributed_c10d, name, recorded)
        setattr(dist, name, recorded)


def engine_steps(device: torch.device) -> None:
    from engine_fixtures import make_batch, split_batch, tiny_model

    from raco.gradients import GradientEngine
    from raco.gradients.sharding import shard_model
    from raco.losses import ObjectiveSpec
    from raco.models.reference import FrozenReference

    specs = [ObjectiveSpec("a", loss="ipo", beta=0.5), ObjectiveSpec("b", loss="hinge", beta=0.5)]
    reference = FrozenReference(tiny_model("llama", seed=1).to(device))
    batch = split_batch(make_batch(4, 2, seed=3), 2)[dist.get_rank()]
    runs = [("fused", "step", "raco"), ("plain", "step", "raco"), ("fused", "microbatch", "raco")]
    runs += [("scalarized", "step", "weighted_sum"), ("fsdp2", "step", "raco")]
    for path, solve_per, method in runs:
        model = tiny_model("llama", seed=0).to(device)
        if path == "fsdp2":
            shard_model(model)
        engine = GradientEngine(
            model,
            specs,
            [0.5, 0.5],
            method=method,
            path="fused" if path == "fsdp2" else path,
            solve_per=solve_per,
            verify_fused=False,
            reference=reference,
        )
        micro = [{k: v.to(device) for k, v in mb.items()} for mb in split_batch(batch, 1)]
        before = len(CALLS)
        counts = engine.step_counts(micro)
        for mb in micro:
            engine.accumulate(mb, counts=counts)
        engine.finish_step()
        ENGINE_CALLS[f"{path}-{solve_per}"] = len(CALLS) - before


def training(out: Path) -> None:
    from toy_data import tiny_tree, write_toy

    from raco.training.loop import train

    files = (write_toy(out / "train.jsonl", 32, 0), write_toy(out / "eval.jsonl", 8, 1))
    overrides = {"train.max_steps": 2, "train.batch_size": 4, "train.save_every": 1, "train.eval_every": 1}
    train(tiny_tree(*files, out / "run", **overrides))


def main(out: Path, device_type: str) -> None:
    from accelerate import Accelerator

    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=device_type == "cpu")
    rank = dist.get_rank()
    expected = torch.device(device_type, int(os.environ["LOCAL_RANK"])) if device_type == "cuda" else "cpu"
    patch_collectives()
    engine_steps(accelerator.device)
    training(out)
    (out / f"calls-{rank}.json").write_text(json.dumps(CALLS))
    (out / f"engine-calls-{rank}.json").write_text(json.dumps(ENGINE_CALLS))
    (out / f"expected-{rank}.json").write_text(json.dumps(str(expected)))
    dist.barrier()
    dist.destroy_process_group()  # gloo threads alive at interpreter exit abort the process
    exit_now()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
