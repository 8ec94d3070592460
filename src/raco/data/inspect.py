"""``raco data inspect``: statistics of a preference dataset, as text or JSON.

Conflict: objectives ``a`` and ``b`` disagree on a row when both signs are non-zero and opposite.
``conflict_rate["a|b"]`` is the share of all loaded rows on which they disagree (0.0 for no rows).

The data options are spelt as in ``raco train`` and the ``data:`` section of its YAML file
(``--data.adapter``, ``--data.options key=value``, ...; the flags and their help come from
:class:`raco.config.DataConfig`), and ``--config RUN.yaml`` reads that section of a training config.
Nothing here imports torch or transformers; ``datasets`` is imported only for the sources that need
it (Parquet, CSV, folders, hub datasets).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from raco.config import DataConfig, resolve_data_paths
from raco.config_tree import ConfigError, build, coerce
from raco.data.adapters import ADAPTER_OPTIONS
from raco.data.errors import DataError
from raco.data.load import load_preference_data
from raco.data.schema import PreferenceDataset, PreferenceRow
from raco.data.sources import quiet_progress_bars
from raco.data.spec import DataSpec, spec_from_config

SIGN_KEYS = {1: "+1", -1: "-1", 0: "0"}


def sign_counts(rows_signs: Iterable[Sequence[int]], objectives: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per objective: how many rows prefer response 1 (+1), response 2 (-1), or neither (0)."""
    signs = {name: {"+1": 0, "-1": 0, "0": 0} for name in objectives}
    for row_signs in rows_signs:
        for name, sign in zip(objectives, row_signs, strict=True):
            signs[name][SIGN_KEYS[int(sign)]] += 1
    return signs


def dataset_stats(dataset: PreferenceDataset) -> dict[str, Any]:
    """``rows``, ``objectives``, ``signs`` ({objective: {"+1", "-1", "0"}}), ``conflict_rate``
    ({"a|b": share}), ``skipped`` ({reason: count}) and, when loading noticed something (columns that
    look like unread labels, :mod:`raco.data.hints`), ``notes``."""
    signs = sign_counts((row.signs for row in dataset.rows), dataset.objectives)
    pairs = list(combinations(range(len(dataset.objectives)), 2))
    conflicts = dict.fromkeys(pairs, 0)
    for row in dataset.rows:
        for i, j in pairs:
            conflicts[i, j] += int(row.signs[i] * row.signs[j] < 0)
    total = len(dataset.rows)
    return {
        "rows": total,
        "objectives": list(dataset.objectives),
        "signs": signs,
        "conflict_rate": {
            f"{dataset.objectives[i]}|{dataset.objectives[j]}": (count / total if total else 0.0)
            for (i, j), count in conflicts.items()
        },
        "skipped": dict(dataset.skipped),
        **({"notes": list(dataset.notes)} if dataset.notes else {}),
    }


def format_stats(stats: dict[str, Any], examples: list[PreferenceRow], source: str | None) -> str:
    """Human-readable report of :func:`dataset_stats` plus a few example rows."""
    lines = [f"source: {source}", f"rows: {stats['rows']}", f"objectives: {', '.join(stats['objectives'])}"]
    lines.extend(f"note: {note}" for note in stats.get("notes", []))
    lines.append("signs (+1 first preferred / -1 second preferred / 0 tie or unknown):")
    for name, counts in stats["signs"].items():
        lines.append(f"  {name}: +1 {counts['+1']}  -1 {counts['-1']}  0 {counts['0']}")
    if stats["conflict_rate"]:
        lines.append("conflict rate (both signs non-zero and opposite):")
        lines.extend(f"  {pair}: {rate:.1%}" for pair, rate in stats["conflict_rate"].items())
    total_skipped = sum(stats["skipped"].values())
    lines.append(f"skipped rows: {total_skipped}")
    lines.extend(f"  {count}  {reason}" for reason, count in stats["skipped"].items())
    for row in examples:
        lines.append(f"example {row.index} ({row.source}) signs {list(row.signs)}:")
        for label, part in (
            ("prompt", row.prompt),
            ("response_1", row.response_1),
            ("response_2", row.response_2),
        ):
            lines.append(f"  {label}: {_preview(part)}")
    return "\n".join(lines)


def _preview(part: Any, limit: int = 100) -> str:
    is_chat = isinstance(part, list)
    text = " | ".join(f"{m['role']}: {m['content']}" for m in part) if is_chat else str(part)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


DATA_FLAGS = (
    "train",
    "adapter",
    "split",
    "config_name",
    "data_dir",
    "revision",
    "columns",
    "labels",
    "directions",
    "options",
    "on_invalid",
)
"""The fields of ``raco.config.DataConfig`` that say what to load and how (``raco train`` spells them
``--data.<field>``); the tokenisation and held-out fields do not change what inspect reports."""

MAPPING_METAVARS = {
    "columns": "ROLE=COLUMN[,...]",
    "labels": "OBJECTIVE=COLUMN[,...]",
    "directions": "OBJECTIVE=lower[,...]",
    "options": "KEY=VALUE[,...]",
}

DEPRECATED = {
    "--dataset": "--data.adapter",
    "--split": "--data.split",
    "--data-dir": "--data.data_dir",
    "--revision": "--data.revision",
    "--column": "--data.columns",
    "--label": "--data.labels",
    "--lower": "--data.directions OBJECTIVE=lower",
    "--skip-invalid": "--data.on_invalid skip",
}
"""Old ``raco data inspect`` flags, still read, with the name they now have."""


def _data_fields() -> dict[str, dataclasses.Field]:
    fields = {f.name: f for f in dataclasses.fields(DataConfig)}
    return {name: fields[name] for name in DATA_FLAGS}


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raco data inspect``: the ``--data.*`` flags of ``raco train`` that select and
    read the data, ``--config RUN.yaml``, and the report's own flags."""
    parser.add_argument(
        "path_or_name",
        nargs="?",
        metavar="PATH_OR_NAME",
        help="local file/folder or HF dataset name (same as --data.train)",
    )
    parser.add_argument(
        "--config",
        metavar="RUN.yaml",
        help="a `raco train` config: inspect its data section (flags override it, as in raco train)",
    )
    group = parser.add_argument_group("data options (as in `raco train` and the YAML `data:` section)")
    for name, field in _data_fields().items():
        help_text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        if choices:
            help_text += " {" + ",".join(choices) + "}"
        if name == "options":
            help_text += " (" + "; ".join(f"{a}: {', '.join(o)}" for a, o in ADAPTER_OPTIONS.items()) + ")"
        if name in MAPPING_METAVARS:
            help_text += "; repeatable"
        group.add_argument(
            f"--data.{name}",
            dest=f"data:{name}",
            metavar=MAPPING_METAVARS.get(name, name.upper()),
            action="append" if name in MAPPING_METAVARS else "store",
            default=None,
            help=help_text.replace("%", "%%"),
        )
    parser.add_argument(
        "--objectives", default=None, help="comma-separated objectives to keep, in this order"
    )
    parser.add_argument("--examples", type=int, default=3, help="example rows to print (default 3)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    old = parser.add_argument_group("deprecated")
    for flag in ("--dataset", "--split", "--data-dir", "--revision"):
        old.add_argument(flag, dest=f"old:{flag}", default=None, help=argparse.SUPPRESS)
    for flag in ("--column", "--label", "--lower"):
        old.add_argument(flag, dest=f"old:{flag}", action="append", default=None, help=argparse.SUPPRESS)
    old.add_argument("--skip-invalid", dest="old:--skip-invalid", action="store_true", help=argparse.SUPPRESS)


def run_inspect(args: argparse.Namespace) -> int:
    """Load the data ``args`` name and print its statistics; raises DataError on bad input."""
    spec = inspect_spec(args)
    quiet_progress_bars()
    dataset = load_preference_data(spec)
    stats = dataset_stats(dataset)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats, dataset.rows[: max(args.examples, 0)], dataset.source))
    return 0


def inspect_spec(args: argparse.Namespace) -> DataSpec:
    """The :class:`DataSpec` of parsed ``raco data inspect`` arguments: the YAML ``data:`` section of
    ``--config`` (if any) < ``--data.*`` flags < the positional PATH_OR_NAME."""
    tree, objectives = _from_yaml(args.config) if args.config else ({}, None)
    flags = _flag_values(args)
    path = args.path_or_name
    if path is not None and flags.get("train") not in (None, path):
        raise DataError(
            f"two sources given: PATH_OR_NAME {path!r} and --data.train {flags['train']!r}; give one",
            field="data.train",
        )
    for key, value in flags.items():
        if isinstance(value, dict):
            tree[key] = {**_as_mapping(tree.get(key), f"data.{key}", args.config), **value}
        else:
            tree[key] = value
    if path is not None:
        tree["train"] = path
        tree.pop("separate", None)
    try:
        data = build(DataConfig, tree, "data.")
    except ConfigError as err:
        raise DataError(str(err)) from None
    if not data.train and not data.separate:
        raise DataError(
            "nothing to inspect: give PATH_OR_NAME, --data.train, or --config RUN.yaml", field="data.train"
        )
    if args.objectives:
        objectives = tuple(name.strip() for name in args.objectives.split(",") if name.strip())
    return spec_from_config(data, objectives=objectives)


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """``--data.*`` values (old flag names included, with a note on stderr), as DataConfig values."""
    values: dict[str, Any] = {}
    given = vars(args)
    for old, new in DEPRECATED.items():
        value = given.get(f"old:{old}")
        if value in (None, False, []):
            continue
        print(f"raco data inspect: {old} is deprecated; use {new} (as in raco train)", file=sys.stderr)
        if old == "--lower":
            values.setdefault("directions", {}).update(dict.fromkeys(value, "lower"))
        elif old == "--skip-invalid":
            values["on_invalid"] = "skip"
        elif old in ("--column", "--label"):
            key = "columns" if old == "--column" else "labels"
            values.setdefault(key, {}).update(_pairs(value, old))
        else:
            values[new.removeprefix("--data.")] = value
    for name in DATA_FLAGS:
        value = given.get(f"data:{name}")
        if value is None:
            continue
        if name in MAPPING_METAVARS:
            merged: dict[str, Any] = values.setdefault(name, {})
            for item in value:
                try:
                    merged.update(coerce(item, dict[str, Any], f"data.{name}"))
                except ConfigError as err:
                    raise DataError(str(err)) from None
        else:
            values[name] = value
    return values


def _from_yaml(path: str) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    """(the ``data:`` mapping, the objective names) of a ``raco train`` YAML file; data paths are
    resolved as ``raco train`` resolves them (current directory, else the YAML file's folder)."""
    file = Path(path)
    if not file.is_file():
        if file.suffix.lower() not in (".yaml", ".yml"):
            raise DataError(
                f"--config is a training config file (RUN.yaml), as in raco train; for the dataset "
                f"configuration name use --data.config_name {path}",
                field="--config",
            )
        raise DataError(f"no such file (looked for {file.resolve()})", file=path)
    try:
        tree = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DataError(f"cannot be read as YAML: {_first_line(err)}", file=path) from None
    if not isinstance(tree, dict):
        raise DataError("the top level must be a mapping", file=path)
    resolve_data_paths(tree, file.parent)
    data = _as_mapping(tree.get("data"), "data", path)
    items = tree.get("objectives") or []
    if not isinstance(items, list):
        raise DataError("expected a list of {name: ...} mappings", file=path, field="objectives")
    given = [item.get("name") if isinstance(item, dict) else item for item in items]
    names = [name for name in given if isinstance(name, str) and name]
    if len(names) < len(given):
        raise DataError("every objective needs a name", file=path, field="objectives")
    return dict(data), (tuple(names) if names else None)


def _as_mapping(value: Any, field: str, file: str | None = None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"expected a mapping, got {value!r}", file=file, field=field)
    return dict(value)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; a malformed item is a :class:`DataError`."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise DataError(f"expected NAME=COLUMN, got {item!r}", field=flag)
        pairs[key] = value
    return pairs
