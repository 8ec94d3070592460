"""``raco sweep --config SWEEP.yaml [--key value ...] [--parallel N] [--launcher local|slurm]``."""

from __future__ import annotations

import argparse
import shlex
import sys

from raco.config_tree import ConfigError
from raco.data.errors import DataError

DESCRIPTION = """Train and evaluate every (method, weights, seed) point of a sweep file, then write the
results table and each method's Pareto front with its hypervolume (docs/sweeps.md).

Sweep keys can be given as flags: --methods raco,weighted_sum --seeds 0,1 --output_dir sweeps/x
--overrides.train.max_steps 20 --eval.generation.max_new_tokens 32. Re-running the same command resumes
a sweep killed at any moment. Slurm: --launcher slurm --slurm.partition gpu --slurm.gpus_per_node 1
--slurm.time 120 (any submitit slurm_* parameter)."""


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The fixed arguments of ``raco sweep`` (sweep keys and --slurm.* are read from the leftovers)."""
    parser.add_argument("--config", metavar="SWEEP.yaml", required=True, help="the sweep file")
    parser.add_argument("--parallel", type=int, default=1, metavar="N", help="points run at a time (local)")
    parser.add_argument(
        "--launcher", default="local", choices=("local", "slurm"), help="where points run (default: here)"
    )


def run_sweep_command(args: argparse.Namespace, rest: list[str], argv: list[str]) -> int:
    """``raco sweep``: 0 on success, 2 (one paragraph on stderr) for bad input."""
    from raco.sweep.config import load_sweep_config
    from raco.sweep.run import Launcher, run_sweep
    from raco.training.cli_train import overrides_from

    try:
        if args.parallel < 1:
            raise ConfigError(f"--parallel: at least 1, got {args.parallel}")
        flags = overrides_from(argparse.Namespace(), rest)
        slurm = {k.removeprefix("slurm."): v for k, v in flags.items() if k.startswith("slurm.")}
        sweep = load_sweep_config(args.config, {k: v for k, v in flags.items() if not k.startswith("slurm.")})
        sweep.command = "raco " + shlex.join(argv)
        run_sweep(sweep, Launcher(args.launcher, args.parallel, slurm))
    except (ConfigError, DataError) as err:
        print(f"raco sweep: error: {err}", file=sys.stderr)
        return 2
    return 0
