"""Worker of test_checkpoint_sharded: ``torchrun --nproc_per_node 2 dist_checkpoint_worker.py DIR``.

First the checkpoint one unsharded process saved in ``DIR/one`` is loaded into a fresh sharded model
(``DIR/from-one-<rank>.pt``). Then a tiny MLP sharded by FSDP2 (``fully_shard``, gloo) and its AdamW
take two steps; the full state (gathered) goes to ``DIR/expected.pt``; a run checkpoint of the sharded
state is written (``write_sharded_checkpoint``), one more step is taken, and the checkpoint is loaded
back: the full state must equal the saved one exactly (``DIR/reloaded-<rank>.pt`` for the test)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
from torch.distributed.fsdp import fully_shard

from raco.training.checkpoint import is_sharded, load_sharded, rng_state, write_sharded_checkpoint

STEP = 2


def tiny(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The same MLP in every process (and in the test's), with AdamW."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 5))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


def step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 8, generator=generator)
    model(x).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Every weight and optimizer state, whole, on the CPU (a collective when sharded)."""
    options = StateDictOptions(full_state_dict=True)  # on every process (cpu_offload: process 0 only)
    model_state, optim_state = get_state_dict(model, optimizer, options=options)
    return {"model": model_state, "optim": optim_state}


def sharded_tiny(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    """:func:`tiny` with each Linear and the whole sharded by FSDP2, and AdamW over the shards."""
    model, _ = tiny(seed)
    for layer in (model[0], model[2]):
        fully_shard(layer)
    fully_shard(model)
    assert is_sharded(model)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


def main(root: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    fresh, fresh_optimizer = sharded_tiny(seed=3)  # 1 → 2: what one unsharded process saved
    load_sharded(root / "one" / f"step-{STEP:08d}", fresh, fresh_optimizer)
    torch.save(full_state(fresh, fresh_optimizer), root / f"from-one-{rank}.pt")
    model, optimizer = sharded_tiny()
    for seed in range(STEP):
        step(model, optimizer, seed)
    expected = full_state(model, optimizer)
    if rank == 0:
        torch.save(expected, root / "expected.pt")
    files = {
        "state.json": {"step": STEP, "processes": 2},
        "optimizer.pt": {"scheduler": {}},
        **{f"rng-{r}.pt": rng_state() for r in (0, 1)},
    }
    for _ in range(2):  # the second time replaces the first (as a run resumed from that step does)
        folder = write_sharded_checkpoint(
            root / "run", STEP, files, keep_last=2, model=model, optimizer=optimizer
        )
    step(model, optimizer, 99)
    assert not torch.equal(full_state(model, optimizer)["model"]["0.weight"], expected["model"]["0.weight"])
    load_sharded(folder, model, optimizer)
    torch.save(full_state(model, optimizer), root / f"reloaded-{rank}.pt")
    step(model, optimizer, STEP)  # training goes on from the loaded state
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
