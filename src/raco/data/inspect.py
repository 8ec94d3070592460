"""``raco data inspect``: statistics of a preference dataset, as text or JSON.

Conflict: objectives ``a`` and ``b`` disagree on a row when both signs are non-zero and opposite.
``conflict_rate["a|b"]`` is the share of all loaded rows on which they disagree (0.0 for no rows).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

import datasets

from raco.data.errors import DataError
from raco.data.load import load_preference_data
from raco.data.schema import PreferenceDataset, PreferenceRow
from raco.data.spec import DataSpec

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
    ({"a|b": share}) and ``skipped`` ({reason: count})."""
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
    }


def format_stats(stats: dict[str, Any], examples: list[PreferenceRow], source: str | None) -> str:
    """Human-readable report of :func:`dataset_stats` plus a few example rows."""
    lines = [f"source: {source}", f"rows: {stats['rows']}", f"objectives: {', '.join(stats['objectives'])}"]
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


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raco data inspect``."""
    parser.add_argument("path_or_name", metavar="PATH_OR_NAME", help="local file/folder or HF dataset name")
    parser.add_argument(
        "--dataset",
        default="auto",
        metavar="ADAPTER",
        help="adapter: auto, pairwise, trl, pku_saferlhf, raco_reddit, ultrafeedback, "
        "helpsteer2, hh_rlhf (default: auto)",
    )
    parser.add_argument("--split", default="train", help="split (folders and hub datasets)")
    parser.add_argument("--config", dest="config_name", default=None, help="dataset config name")
    parser.add_argument("--data-dir", default=None, help="dataset data_dir (e.g. helpful-base)")
    parser.add_argument("--revision", default=None, help="dataset revision")
    parser.add_argument("--objectives", default=None, help="comma-separated objectives to keep")
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="ROLE=COLUMN",
        help="column mapping, e.g. prompt=question (roles: prompt, response_1, response_2, "
        "chosen, rejected); repeatable",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="OBJECTIVE=COLUMN",
        help="label column of an objective, e.g. helpful=label_help; repeatable",
    )
    parser.add_argument(
        "--lower",
        action="append",
        default=[],
        metavar="OBJECTIVE",
        help="prefer lower scores / flip the labels of this objective; repeatable",
    )
    parser.add_argument("--skip-invalid", action="store_true", help="count invalid rows instead of failing")
    parser.add_argument("--examples", type=int, default=3, help="example rows to print (default 3)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")


def run_inspect(args: argparse.Namespace) -> int:
    """Load the data ``args`` name and print its statistics; raises DataError on bad input."""
    spec = DataSpec(
        path_or_name=args.path_or_name,
        adapter=args.dataset,
        split=args.split,
        config_name=args.config_name,
        data_dir=args.data_dir,
        revision=args.revision,
        columns=_pairs(args.column, "--column"),
        labels=_pairs(args.label, "--label"),
        objectives=tuple(args.objectives.split(",")) if args.objectives else None,
        directions=dict.fromkeys(args.lower, "lower"),
        on_invalid="skip" if args.skip_invalid else "error",
    )
    datasets.disable_progress_bars()
    dataset = load_preference_data(spec)
    stats = dataset_stats(dataset)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats, dataset.rows[: max(args.examples, 0)], dataset.source))
    return 0


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; a malformed item is a :class:`DataError`."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise DataError(f"expected NAME=COLUMN, got {item!r}", field=flag)
        pairs[key] = value
    return pairs
