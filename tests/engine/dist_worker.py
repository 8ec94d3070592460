"""Worker for test_distributed: two optimizer steps of RACO on a tiny Llama over a fixed global batch.

Run as ``torchrun --nproc_per_node N dist_worker.py OUT PATH NORMALIZE[,NORMALIZE...]`` (or plainly,
N = 1): rank r takes its share of the pairs of each global batch; the engine all-reduces per-objective
gradients explicitly. One launch trains once per normalize mode (a launch costs more than the training)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import make_batch, split_batch, tiny_model

from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec
from raco.models.reference import FrozenReference

GLOBAL_PAIRS, MICRO_PAIRS, STEPS = 8, 2, 2


def main(out: Path, path: str, normalizes: list[str]) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    torch.set_num_threads(1)
    for normalize in normalizes:
        train(accelerator, out, path, normalize)
    accelerator.end_training()  # destroys the process group: gloo threads alive at exit abort the process


def train(accelerator, out: Path, path: str, normalize: str) -> None:
    rank, world = accelerator.process_index, accelerator.num_processes
    model, reference = tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    specs = [ObjectiveSpec("a", beta=0.2), ObjectiveSpec("b", loss="ipo", beta=2.0)]
    engine = GradientEngine(
        model,
        specs,
        [0.6, 0.4],
        method="raco",
        method_options={"c": 0.4},
        path=path,
        reference=FrozenReference(reference),
        verify_fused=False,
        normalize=normalize,
        bucket_bytes=4096,  # several all-reduce buckets (the default would carry the tiny model in one)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(STEPS):
        batch = make_batch(GLOBAL_PAIRS, 2, seed=100 + step)  # ties: ranks hold different N_i
        share = GLOBAL_PAIRS // world
        local = split_batch(batch, share)[rank]
        micro = split_batch(local, MICRO_PAIRS)
        counts = engine.step_counts(micro)
        for mb in micro:
            engine.accumulate(mb, counts=counts)
        engine.finish_step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.save(params, out / f"params_{normalize}_{world}_{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(","))
