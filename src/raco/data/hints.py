"""Columns that look like per-objective labels but are not read, and how to map them.

A user's pairwise or TRL file with plain label columns (``helpful``, ``shorter``) instead of
``raco_s_<objective>`` columns or a ``labels`` mapping would otherwise load as one objective (TRL) or
fail with "no sign columns" (pairwise), silently or without saying what to type. The generic adapters
call :func:`label_hint` with the columns they did not use; the hint says which columns look like labels
and spells the mapping for the command line and for YAML.

What looks like a label (decided from the non-null values of the first :data:`SAMPLE_ROWS` rows):

* **readable as is**: every value is a sign raco reads (:func:`raco.data.validate.parse_sign`: 1, -1,
  0, "+1", "A"/"B", tie forms, ...) and at least one is +1 or -1. A column of only 0/1 is read with 0 as
  a tie (no gradient), which the hint points out, since such a column often means "no" by 0;
* **needs rewriting**: booleans, or the values 1/2 (naming the preferred response): raco does not guess
  which way they point, so the hint says to rewrite them as 1/-1/0 first.

Anything else (text, scores, ids beyond 0/1) is not a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from raco.data.errors import DataError
from raco.data.sources import Records
from raco.data.validate import parse_sign

SAMPLE_ROWS = 1000
"""Rows whose values decide whether a column looks like a label."""


def _kind(values: list[Any]) -> str | None:
    """``"signs"``, ``"zero-one"``, ``"boolean"``, ``"one-two"`` or None (not a label)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, bool) for v in present):
        return "boolean"
    if any(isinstance(v, bool | dict | list) for v in present):
        return None
    keys = {str(v).strip().lower() for v in present}
    if keys <= {"1", "2", "1.0", "2.0"} and keys & {"2", "2.0"}:
        return "one-two"
    try:
        signs = {parse_sign(v, "") for v in present}
    except DataError:
        return None
    if not signs & {1, -1}:
        return None
    return "zero-one" if keys <= {"0", "1", "0.0", "1.0"} else "signs"


def label_like_columns(records: Records, unused: Iterable[str]) -> dict[str, str]:
    """Column -> kind (see :func:`_kind`) for the ``unused`` columns of ``records`` that look like labels."""
    columns = [c for c in unused if c in records.columns]
    if not columns or len(records) == 0:
        return {}
    values: dict[str, list[Any]] = {c: [] for c in columns}
    for position in range(min(len(records), SAMPLE_ROWS)):
        row = records.rows[position]
        for column in columns:
            values[column].append(row.get(column))
    kinds = {column: _kind(found) for column, found in values.items()}
    return {column: kind for column, kind in kinds.items() if kind is not None}


def mapping_spelling(labels: Mapping[str, str]) -> str:
    """``--data.labels a=x,b=y`` and its YAML form ``data: {labels: {a: x, b: y}}``."""
    flag = ",".join(f"{objective}={column}" for objective, column in labels.items())
    yaml = ", ".join(f"{objective}: {column}" for objective, column in labels.items())
    return f"--data.labels {flag} (YAML: data: {{labels: {{{yaml}}}}})"


def label_hint(
    records: Records, unused: Iterable[str], mapped: Mapping[str, str], loads_as: str | None
) -> str | None:
    """The note for the label-like ``unused`` columns of ``records`` (None when there are none).

    ``mapped`` is the objective -> column mapping in use; ``loads_as`` says what the data loads as
    without the hint (e.g. "one objective `preference` (chosen preferred on every row)"); None leaves
    that and the source's name out (for an error message, which names the file itself)."""
    kinds = label_like_columns(records, unused)
    if not kinds:
        return None
    readable = [c for c, kind in kinds.items() if kind in ("signs", "zero-one")]
    rewrite = [c for c, kind in kinds.items() if kind in ("boolean", "one-two")]
    several = len(kinds) > 1
    named = f"column{'s' if several else ''} {', '.join(kinds)}"
    head = f"{named} look{'' if several else 's'} like per-objective labels"
    if loads_as is not None:
        head = (
            f"{records.name}: {head} but {'are' if several else 'is'} not read; the data loads as {loads_as}"
        )
    parts = [head]
    if readable:
        spelling = mapping_spelling({**mapped, **{c: c for c in readable}})
        parts.append(
            f"to train {', '.join(readable)} as objective{'s' if len(readable) > 1 else ''}: {spelling}"
        )
        zero_one = [c for c in readable if kinds[c] == "zero-one"]
        if zero_one:
            parts.append(
                f"{', '.join(zero_one)} hold{'s' if len(zero_one) == 1 else ''} only 0/1: 1 is read as "
                "response 1 (chosen) preferred and 0 as a tie (no gradient); write -1 where response 2 "
                "(rejected) is preferred"
            )
    for column in rewrite:
        values = "true/false" if kinds[column] == "boolean" else "1/2"
        parts.append(
            f"{column} holds {values}, which raco does not read as a label: rewrite it as 1 (response 1 / "
            f"chosen preferred), -1 (response 2 / rejected preferred) or 0 (tie), then map it with "
            f"--data.labels {column}={column}"
        )
    return "; ".join(parts)
