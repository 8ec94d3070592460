"""The ``raco`` command line: a thin dispatcher over one function per subcommand.

Add a command by writing ``_add_<name>(subparsers)`` that registers its parser with
``set_defaults(handler=...)``, and calling it from :func:`_build_parser`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from raco import __version__

EXIT_BAD_INPUT = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raco", description="Reward-free multi-objective preference alignment (RACO)."
    )
    parser.add_argument("--version", action="version", version=f"raco {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_data(subparsers)
    _add_train(subparsers)
    _add_eval(subparsers)
    _add_sweep(subparsers)
    _add_export(subparsers)
    _add_report(subparsers)
    return parser


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    # Listed here for `raco --help`; `raco train ...` itself is dispatched in main() to
    # raco.training.cli_train, whose flags (generated from the config dataclasses) need parse_known_args.
    subparsers.add_parser("train", help="train a model (see `raco train --help`)", add_help=False)


def _add_eval(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    # Its configuration flags (--objectives.NAME.scorer, --generation.*) are read from the leftovers
    # of parse_known_args, as `raco train` reads its own.
    from raco.eval.cli import DESCRIPTION, add_eval_arguments

    parser = subparsers.add_parser(
        "eval",
        help="judge a tuned model (and its starting model) on held-out prompts and pairs",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_eval_arguments(parser)
    return parser


def _add_sweep(subparsers: argparse._SubParsersAction) -> None:
    # Sweep keys given as flags (--methods, --overrides.train.max_steps, --slurm.*) are leftovers of
    # parse_known_args, as for `raco eval`.
    from raco.sweep.cli import DESCRIPTION, add_sweep_arguments

    parser = subparsers.add_parser(
        "sweep",
        help="train and evaluate methods × weights × seeds; Pareto fronts and hypervolume",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_sweep_arguments(parser)


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    from raco.export import DESCRIPTION, add_export_arguments, run_export

    export = subparsers.add_parser(
        "export",
        help="write a finished run's model as a plain transformers folder (or adapter) with a model card",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_export_arguments(export)
    export.set_defaults(handler=run_export)


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    from raco.sweep.report import DESCRIPTION, add_report_arguments, run_report

    report = subparsers.add_parser(
        "report",
        help="plots and a Markdown + self-contained HTML report of a run or a sweep",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_arguments(report)
    report.set_defaults(handler=run_report)


def _add_data(subparsers: argparse._SubParsersAction) -> None:
    from raco.data.inspect import add_inspect_arguments, run_inspect
    from raco.data.label import DESCRIPTION as LABEL_DESCRIPTION
    from raco.data.label import add_label_arguments, run_label

    data = subparsers.add_parser("data", help="inspect preference data, derive an objective's signs")
    data_commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    inspect = data_commands.add_parser(
        "inspect",
        help="rows, objectives, sign counts, conflict rates, skipped rows, examples",
        description="Load preference data as `raco train` would (no model, no torch) and report rows, "
        "objectives, sign counts, conflict rates, skipped rows and examples. Data options are spelt "
        "as in `raco train` and its YAML `data:` section (docs/data.md).",
    )
    add_inspect_arguments(inspect)
    inspect.set_defaults(handler=run_inspect)
    label = data_commands.add_parser(
        "label",
        help="add an objective's sign column by scoring both responses of every pair with a scorer",
        description=LABEL_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_label_arguments(label)
    label.set_defaults(handler=run_label)


def _quiet_library_deprecations() -> None:
    """peft calls a transformers 5 method that transformers itself deprecates; the warning tells a
    raco user nothing they can act on."""
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``raco`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Bad input (:class:`raco.data.DataError`) prints one paragraph to stderr and returns 2.
    """
    from raco.data.errors import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_library_deprecations()
    if argv[:1] == ["train"]:
        from raco.training.cli_train import main as train_main

        return train_main(argv[1:])
    parser = _build_parser()
    if argv[:1] == ["eval"]:
        from raco.eval.cli import run_eval

        args, rest = parser.parse_known_args(argv)
        return run_eval(args, rest)
    if argv[:1] == ["sweep"]:
        from raco.sweep.cli import run_sweep_command

        args, rest = parser.parse_known_args(argv)
        return run_sweep_command(args, rest, argv)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(handler(args))
    except DataError as err:
        print(f"raco: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `raco data inspect ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
