"""What a sweep costs, and what sharing the reference saves (issue 11).

    .venv/bin/python benchmarks/sweep_cost.py [--steps 4] [--model tiny-random|smollm2-135m-instruct]

Runs the same 2-method × 3-weight sweep (raco and weighted_sum; weights 0.8/0.2, 0.5/0.5, 0.2/0.8;
full fine-tuning with a frozen-copy reference on the toy friendly/concise data, judged by two length
scorers) twice, side by side in one process: with ``share_reference: true`` (every point reads the
reference log-probs from the cache, computed once) and ``false`` (every point runs its own reference
forward pass each step), after an unmeasured warm-up sweep. Prints both wall times and their ratio.
Each run uses a fresh cache folder, so the shared run pays for computing the reference once: over
few steps (fewer rows than the data holds) the cache costs more than it saves.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training"))
from toy_data import tiny_tree, write_toy

from raco.sweep.config import load_sweep_config
from raco.sweep.run import Launcher, run_sweep

EVAL = {
    "objectives": [
        {"name": "chars", "scorer": "length:unit=characters", "direction": "lower"},
        {"name": "words", "scorer": "length:unit=words", "direction": "higher"},
    ],
    "generation": {"max_new_tokens": 8},
    "prompts": {"max_prompts": 4},
}


def sweep_seconds(root: Path, share: bool, steps: int, model: str) -> float:
    """Wall seconds of the whole sweep (training, evaluation, base evaluation, results)."""
    train = write_toy(root / "train.jsonl", 96, seed=0)
    held_out = write_toy(root / "eval.jsonl", 32, seed=1)
    tree = tiny_tree(train, held_out, root / "unused", **{"train.max_steps": steps, "model.name": model})
    tree["model"]["reference"] = "auto"
    (root / "train.yaml").write_text(yaml.safe_dump(tree))
    sweep = {
        "train": str(root / "train.yaml"),
        "methods": ["raco", "weighted_sum"],
        "weights": {"vectors": [[0.8, 0.2], [0.5, 0.5], [0.2, 0.8]]},
        "eval": EVAL,
        "share_reference": share,
        "output_dir": str(root / "sweep"),
    }
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    os.environ["RACO_CACHE"] = str(root / "cache")
    started = time.perf_counter()
    run_sweep(load_sweep_config(root / "sweep.yaml"), Launcher(), say=lambda _: None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=24)  # 2 epochs of the 96 toy pairs at 8 per step
    parser.add_argument("--model", default="tiny-random")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; 2 methods × 3 weights, {args.steps} steps, {args.model}")
    with tempfile.TemporaryDirectory() as folder:  # warm-up: imports, first loads (not measured)
        sweep_seconds(Path(folder), True, 1, args.model)
    seconds = {}
    for share in (False, True):
        with tempfile.TemporaryDirectory() as folder:
            seconds[share] = sweep_seconds(Path(folder), share, args.steps, args.model)
        print(f"share_reference {str(share).lower():>5}: {seconds[share]:6.1f} s")
    print(f"unshared / shared: {seconds[False] / seconds[True]:.2f}x")


if __name__ == "__main__":
    main()
