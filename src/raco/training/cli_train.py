"""``raco train``: the command-line face of :func:`raco.training.loop.train`.

Every ``--section.key`` flag and its help text is generated from the config dataclasses
(:mod:`raco.config`), so the YAML keys, the flags and ``--help`` cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from raco.config import FOREIGN_NAMES, ConfigError, RunConfig, leaf_fields, load_config
from raco.data.errors import DataError

DESCRIPTION = """Train a causal LM on multi-objective preference data (RACO and baselines).

Values come from the YAML file given by --config; flags override them (dataclass defaults < YAML <
flags). Lists are comma-separated (--lora.target_modules q_proj,v_proj), mappings are key=value pairs
(--data.directions verbosity=lower). Objectives are addressed by name:
--objectives.NAME.weight 0.3 (creates the objective if the YAML does not list it).
Resume an interrupted run, exactly where its last checkpoint left it, with --resume RUN_DIR."""


def _help_for(field: dataclasses.Field, tp: Any) -> str:
    meta = field.metadata
    parts = [meta.get("help", "")]
    if meta.get("choices"):
        parts.append("{" + ",".join(meta["choices"]) + "}")
    default = field.default
    if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    if default is not dataclasses.MISSING:
        parts.append(f"(default: {default!r})")
    return " ".join(p for p in parts if p).replace("%", "%%")


def build_parser(prog: str = "raco train") -> argparse.ArgumentParser:
    """The ``raco train`` parser: --config, --resume, and one flag per config field."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_train_arguments(parser)
    return parser


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``raco train``'s arguments to ``parser`` (also used by the ``raco`` sub-command)."""
    parser.add_argument("--config", metavar="CONFIG.yaml", help="YAML file with the run's values")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for key, field, tp in leaf_fields():
        section = key.split(".")[0] if "." in key else "run"
        if section not in groups:
            title = f"{section} options" if section != "objectives" else "objectives (per name)"
            groups[section] = parser.add_argument_group(title)
        if key.endswith("objectives.NAME.name"):
            continue  # the name is part of the flag itself
        metavar = key.rsplit(".", 1)[-1].upper()
        # `--overwrite` alone = true
        flag_kwargs: dict[str, Any] = {"nargs": "?", "const": "true"} if tp is bool else {}
        groups[section].add_argument(
            f"--{key}",
            dest=f"cfg:{key}",
            metavar=metavar,
            default=argparse.SUPPRESS,
            help=_help_for(field, tp),
            **flag_kwargs,
        )


def _split_flag(args: list[str], position: int) -> tuple[str, str | None, int]:
    flag = args[position]
    if "=" in flag:
        name, value = flag[2:].split("=", 1)
        return name, value, position + 1
    if position + 1 < len(args) and not args[position + 1].startswith("--"):
        return flag[2:], args[position + 1], position + 2
    return flag[2:], None, position + 1


def overrides_from(namespace: argparse.Namespace, rest: list[str]) -> dict[str, Any]:
    """Dotted overrides from parsed flags plus ``--objectives.NAME.FIELD`` (and unknown) leftovers."""
    overrides = {k[4:]: v for k, v in vars(namespace).items() if k.startswith("cfg:")}
    position = 0
    while position < len(rest):
        if not rest[position].startswith("--"):
            raise ConfigError(f"unexpected argument {rest[position]!r} (options look like --train.lr 1e-5)")
        key, value, position = _split_flag(rest, position)
        if value is None:
            if key not in FOREIGN_NAMES:  # TRL/transformers booleans are bare flags (--bf16)
                raise ConfigError(f"--{key}: a value is required")
            value = "true"
        overrides[key] = value
    return overrides


def parse_train_args(argv: list[str]) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse ``raco train`` arguments into (namespace with config/resume, dotted overrides)."""
    parser = build_parser()
    namespace, rest = parser.parse_known_args(argv)
    return namespace, overrides_from(namespace, rest)


def config_from_args(namespace: argparse.Namespace, overrides: dict[str, Any]) -> RunConfig | None:
    """The validated RunConfig of a new run, or None when resuming (the run's own config is used)."""
    if namespace.resume:
        if namespace.config:
            raise ConfigError("--resume RUN_DIR continues with the run's saved config; drop --config")
        return None
    if not namespace.config and not overrides:
        raise ConfigError("give --config CONFIG.yaml (and/or --section.key value flags); see --help")
    return load_config(namespace.config, overrides)


def _destroy_process_group() -> None:
    """End of a `raco train` process: tear down torch.distributed (gloo/NCCL threads still alive at
    interpreter exit abort the process). The Python API leaves it to the caller, who may train again."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _is_main_process() -> bool:
    """Rank 0 under torchrun / accelerate launch (which set RANK), or a single process."""
    return int(os.environ.get("RANK", "0")) == 0


def run_train(namespace: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Validate the configuration (before any model load), then train; returns an exit status:
    0 done (also: ``--resume`` of a run that is already complete, which changes nothing), 2 bad
    configuration, data or model (one paragraph, no run directory left behind), 3 stopped with a
    checkpoint, 130 interrupted with a checkpoint."""
    try:
        cfg = config_from_args(namespace, overrides)
    except ConfigError as err:
        print(f"raco train: error: {err}", file=sys.stderr)
        return 2
    from raco.gradients.capture import FusedPathUnsupported
    from raco.training.loop import TrainingStopped, resume, train

    try:
        result = resume(namespace.resume, overrides=overrides) if cfg is None else train(cfg)
        _destroy_process_group()
    except (ConfigError, DataError, FusedPathUnsupported) as err:
        rank = "" if _is_main_process() else f" [rank {os.environ['RANK']}]"  # may be one rank's own
        print(f"raco train{rank}: error: {err}", file=sys.stderr)
        return 2
    except TrainingStopped as err:  # every process stops at the same step: said once
        if _is_main_process():
            print(f"raco train: stopped: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as err:
        where = f" {namespace.resume}" if namespace.resume else f" {cfg.output_dir}" if cfg else ""
        if _is_main_process():
            print(
                f"raco train: {err or 'interrupted'}; continue with `raco train --resume{where}`",
                file=sys.stderr,
            )
        return 130
    if result.already_complete and _is_main_process():
        print(
            f"raco train: {result.run_dir} is already complete ({result.steps} steps; model in "
            f"{result.model_dir}, summary in {result.summary_file}); nothing to resume, nothing changed"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m raco.training.cli_train`` (``raco train`` calls the same code)."""
    namespace, overrides = None, None
    try:
        namespace, overrides = parse_train_args(sys.argv[1:] if argv is None else argv)
    except ConfigError as err:
        print(f"raco train: error: {err}", file=sys.stderr)
        return 2
    return run_train(namespace, overrides)


if __name__ == "__main__":
    sys.exit(main())
