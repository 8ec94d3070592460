"""Peak memory and time of the Gram matrix of the per-objective store for one large parameter: the
float64 products formed in column blocks (gradients/store.py, ``GRAM_BLOCK``) against one float64 copy
of the whole parameter (``block`` = its size, what the store did before), side by side in one run.

    .venv/bin/python benchmarks/gram_memory.py [--k 2] [--entries 50000000]

The default parameter, 2 × 50M float32 entries (400 MB), stands for a large embedding or LM head (Llama-3-8B's
head is 525M entries); peak = RSS high-water above the level before the call (step_cost.PeakRSS).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

from raco.gradients.store import GRAM_BLOCK, gram_partial

sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_cost.py
from step_cost import PeakRSS


def measure(store: dict[int, torch.Tensor], k: int, block: int) -> tuple[float, float, torch.Tensor]:
    gc.collect()
    with PeakRSS() as peak:
        started = time.perf_counter()
        gram = gram_partial(store, k, block=block)
        seconds = time.perf_counter() - started
    return peak.delta / 2**20, seconds, gram


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--entries", type=int, default=50_000_000)
    args = parser.parse_args()
    store = {0: torch.randn(args.k, args.entries)}
    whole_mib, whole_s, whole = measure(store, args.k, args.entries)
    block_mib, block_s, blocked = measure(store, args.k, GRAM_BLOCK)
    rel = float((blocked - whole).abs().max() / whole.abs().max())
    size = args.k * args.entries * 4 / 2**20
    print(f"k = {args.k}, one parameter of {args.entries:,} entries ({size:.0f} MiB float32)")
    print(f"whole float64 copy:    peak +{whole_mib:8.1f} MiB  {whole_s * 1e3:8.1f} ms")
    print(f"blocks of {GRAM_BLOCK:>9,}:  peak +{block_mib:8.1f} MiB  {block_s * 1e3:8.1f} ms")
    print(f"max |difference| / max |H|: {rel:.1e}")


if __name__ == "__main__":
    main()
