"""``raco eval TARGET [--config EVAL.yaml] [--section.key value ...] --output DIR``."""

from __future__ import annotations

import argparse
import sys

from raco.config_tree import ConfigError
from raco.data.errors import DataError

DESCRIPTION = """Judge a tuned model on held-out prompts and pairs, next to the model it started from.

TARGET is a run directory that `raco train` finished, a model folder (e.g. `raco export` output), a
Hugging Face id, or the offline alias smollm2-135m-instruct. For runs, the starting model is evaluated
the same way (base: auto; --no-base to skip it), and preference metrics are computed on the run's
held-out pairs. Objectives name a scorer and a direction, in EVAL.yaml or as flags:
  raco eval runs/x --objectives.concise.scorer length:unit=words --objectives.concise.direction lower \\
      --objectives.relevant.scorer relevance --output runs/x-eval
DIR receives generations.jsonl and eval.json (docs/eval.md)."""


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The fixed arguments of ``raco eval`` (configuration flags are read from the leftovers)."""
    parser.add_argument("target", metavar="TARGET", help="run directory, model folder, Hub id or alias")
    parser.add_argument("--config", metavar="EVAL.yaml", help="YAML file with the evaluation's values")
    parser.add_argument("--output", "-o", metavar="DIR", required=True, help="folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    parser.add_argument(
        "--base",
        dest="base_flag",
        action="store_const",
        const="true",
        help="also evaluate the starting model",
    )
    parser.add_argument(
        "--no-base", dest="base_flag", action="store_const", const="false", help="skip the starting model"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_eval(args: argparse.Namespace, rest: list[str]) -> int:
    """``raco eval``: 0 on success, 2 (one paragraph on stderr) for bad input."""
    from raco.eval.config import load_eval_config
    from raco.training.cli_train import overrides_from

    try:
        overrides = overrides_from(argparse.Namespace(), rest)
        if args.base_flag is not None:
            overrides["base"] = args.base_flag
        cfg = load_eval_config(args.config, overrides)
        from raco.eval.runner import evaluate_target, table

        result = evaluate_target(
            args.target, cfg, args.output, overwrite=args.overwrite, progress=not args.quiet
        )
    except (ConfigError, DataError) as err:
        print(f"raco eval: error: {err}", file=sys.stderr)
        return 2
    print(table(result))
    print(f"raco eval: wrote {args.output}/generations.jsonl and {args.output}/eval.json")
    return 0
