"""Worker of test_fsdp2: ``torchrun --nproc_per_node N fsdp_worker.py OUT CASE[,CASE...]`` (N = 1: plain
python).

A case is ``{full|lora|gpt2}-k{2|3}-gc{0|1}[-plain|-scalarized|-auto|-gram]``: a tiny Llama (full
fine-tuning, or LoRA) or GPT-2 (whose learned position embeddings the fused path cannot decompose:
``auto`` falls back to the plain path, on every rank together), k objectives, gradient
checkpointing off/on, the engine's path (fused by default; scalarized with weighted-sum
aggregation; gram: fused with ``store="gram"``, each step one micro-batch of all ranks, solved per
micro-batch), two optimizer steps over fixed global batches, rank r taking its share of each.
With N > 1 the policy is FSDP2-sharded (raco.gradients.sharding) and the engine keeps per-objective
gradient shards (the fused path also checked against the plain path on its first micro-batch, as
``path: auto`` does); with N = 1 it is the single-process engine (the reference).
Writes ``OUT/CASE-N.pt`` (rank 0): per-step losses and coefficients, the final full weights and the
peak bytes of per-objective gradients each rank held.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from exits import exit_now

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"
sys.path.insert(0, str(ENGINE_TESTS))
from engine_fixtures import lora_model, make_batch, split_batch, tiny_model  # noqa: E402

from raco.gradients import GradientEngine  # noqa: E402
from raco.gradients.collectives import world_size  # noqa: E402
from raco.gradients.sharding import shard_model  # noqa: E402
from raco.losses import ObjectiveSpec  # noqa: E402
from raco.models.reference import FrozenReference  # noqa: E402

GLOBAL_PAIRS, MICRO_PAIRS, STEPS = 8, 2, 2
# k = 3: small buckets, so that many buckets travel and the big parameters go alone; k = 2: the default
BUCKET_BYTES = {2: 25 * 2**20, 3: 8192}
SPECS = [
    ObjectiveSpec("a", beta=0.2),
    ObjectiveSpec("b", loss="ipo", beta=2.0),
    ObjectiveSpec("c", loss="hinge", beta=0.5),
]


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()


def run_case(case: str, out: Path) -> None:
    kind, k_part, gc_part, *rest = case.split("-")
    k, checkpointing = int(k_part[1:]), gc_part == "gc1"
    variant = rest[0] if rest else "fused"
    path = "fused" if variant == "gram" else variant
    store, solve_per = ("gram", "microbatch") if variant == "gram" else ("gradients", "step")
    rank, world = (dist.get_rank(), world_size()) if world_size() > 1 else (0, 1)
    arch = "gpt2" if kind == "gpt2" else "llama"
    model = lora_model(arch, seed=0) if kind == "lora" else tiny_model(arch, seed=0)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if world > 1:
        shard_model(model)
    weights = [0.5, 0.3, 0.2][:k] if k == 3 else [0.6, 0.4]
    engine = GradientEngine(
        model,
        SPECS[:k],
        weights,
        method="weighted_sum" if path == "scalarized" else "raco",
        method_options={} if path == "scalarized" else {"c": 0.4},
        reference=FrozenReference(tiny_model(arch, seed=1)),
        verify_fused=world > 1,
        path=path,
        bucket_bytes=BUCKET_BYTES[k],
        store=store,
        solve_per=solve_per,
    )
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    record: dict = {"losses": [], "coefficients": []}
    for step in range(STEPS):
        batch = make_batch(GLOBAL_PAIRS, k, seed=100 + step)
        local = split_batch(batch, GLOBAL_PAIRS // world)[rank]
        micro = [local] if store == "gram" else split_batch(local, MICRO_PAIRS)
        counts = engine.step_counts(micro)
        for mb in micro:
            engine.accumulate(mb, counts=counts)
        report = engine.finish_step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record["losses"].append(report.losses)
        record["coefficients"].append(report.coefficients)
    record["params"] = {n: full_tensor(p) for n, p in model.named_parameters() if p.requires_grad}
    peak = torch.tensor([float(engine.peak_store_bytes)])
    if world > 1:
        gathered = [torch.zeros(1) for _ in range(world)]
        dist.all_gather(gathered, peak)
        peak = torch.cat(gathered)
    record["peak_store_bytes"] = peak.tolist()
    if rank == 0:
        torch.save(record, out / f"{case}-{world}.pt")


def main(out: Path, cases: list[str]) -> None:
    torch.set_num_threads(1)
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    for case in cases:
        run_case(case, out)
    if dist.is_initialized():
        dist.destroy_process_group()  # gloo threads alive at interpreter exit abort the process
    exit_now()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(","))
