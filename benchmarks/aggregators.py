"""Time per call of every aggregator for k in {2, 3, 5, 8, 16}.

Gram matrices come from seeded random full-rank gradients (dimension 4096); each figure is the best
of several repeats of the mean over many calls (robust to a busy machine). Targets (issue 2): under
100 µs per call for k <= 3 and under 2 ms for k = 16 on a 2-core CPU machine.

    .venv/bin/python benchmarks/aggregators.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import timeit

import numpy as np
import torch

from raco.aggregators import AGGREGATORS, min_norm

SIZES = (2, 3, 5, 8, 16)
TARGET_US = {2: 100.0, 3: 100.0, 16: 2000.0}


def time_call(fn, number: int, repeat: int = 7) -> float:
    """Best-of-``repeat`` mean seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def run() -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, float]] = {}
    for k in SIZES:
        g = rng.standard_normal((k, 4096))
        gram = torch.tensor(g @ g.T)
        w = torch.tensor(rng.dirichlet(np.ones(k)))
        row = {}
        for name, method in AGGREGATORS.items():
            row[name] = time_call(lambda m=method, h=gram, w=w: m(h, w), number=200 if k <= 8 else 40) * 1e6
        row["min_norm"] = time_call(lambda h=gram: min_norm(h), number=200 if k <= 8 else 40) * 1e6
        results[str(k)] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="also write the figures (µs per call) to this JSON file")
    args = parser.parse_args()
    results = run()
    names = [*AGGREGATORS, "min_norm"]
    print(f"µs per call (best of 7), {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print("k    " + "".join(f"{n:>14s}" for n in names) + "   target")
    for k, row in results.items():
        target = TARGET_US.get(int(k))
        worst = max(row.values())
        verdict = "" if target is None else f"   < {target:g} µs: {'met' if worst < target else 'MISSED'}"
        print(f"{k:<5s}" + "".join(f"{row[n]:14.1f}" for n in names) + verdict)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
