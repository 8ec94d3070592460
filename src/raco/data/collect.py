"""Turning validated values into rows, and the shared last steps of every adapter.

``RowCollector`` validates each row, names the file and row of any error and, when the spec says
``on_invalid="skip"``, counts invalid rows instead of stopping. ``finalize`` selects and orders
objectives, applies directions, and skips (and counts) rows whose every sign is 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from raco.data.errors import DataError, closest_name
from raco.data.schema import PreferenceDataset, PreferenceRow, add_skip, reindexed
from raco.data.sources import Records
from raco.data.spec import DataSpec
from raco.data.validate import check_response, check_text

ALL_ZERO = "all signs 0"


class RowCollector:
    """Collects :class:`PreferenceRow` objects for ``objectives`` from one :class:`Records` source."""

    def __init__(self, records: Records, objectives: Sequence[str], on_invalid: str = "error") -> None:
        self.records = records
        self.objectives = tuple(objectives)
        self.on_invalid = on_invalid
        self.rows: list[PreferenceRow] = []
        self.skipped: dict[str, int] = {}
        self._number = 0

    @contextmanager
    def at(self, number: int) -> Iterator[None]:
        """Work on source row ``number``: a :class:`DataError` inside is located there, then raised
        (``on_invalid="error"``) or counted as a skipped row (``"skip"``)."""
        self._number = number
        try:
            yield
        except DataError as err:
            located = err.located(file=self.records.name, row=number, line=self.records.by_line)
            if self.on_invalid == "error":
                raise located from None
            reason = f"invalid {err.field}: {err.message}" if err.field else f"invalid row: {err.message}"
            add_skip(self.skipped, reason)

    def add(
        self,
        prompt: Any,
        response_1: Any,
        response_2: Any,
        signs: Sequence[int],
        fields: tuple[str, str, str] = ("prompt", "response_1", "response_2"),
    ) -> None:
        """Validate one pair (call inside :meth:`at`) and keep it."""
        prompt = check_text(prompt, fields[0])
        first = check_response(response_1, fields[1])
        second = check_response(response_2, fields[2])
        if first == second:
            raise DataError("is identical to the other response", field=fields[2])
        source = f"{self.records.name}:{self._number}"
        self.rows.append(PreferenceRow(prompt, first, second, tuple(int(s) for s in signs), source))

    def skip(self, reason: str, count: int = 1) -> None:
        """Count source rows left out for ``reason`` (not an error)."""
        add_skip(self.skipped, reason, count)

    def dataset(self) -> PreferenceDataset:
        """Everything collected so far."""
        return PreferenceDataset(self.objectives, self.rows, dict(self.skipped), self.records.name)


def finalize(dataset: PreferenceDataset, spec: DataSpec) -> PreferenceDataset:
    """Select/order objectives, apply directions, skip all-zero rows, renumber rows."""
    available = dataset.objectives
    chosen = spec.objectives if spec.objectives is not None else available
    for name in (*chosen, *spec.directions):
        if name not in available:
            raise DataError(
                f"unknown objective; this data has {', '.join(available)}",
                file=dataset.source,
                field=name,
                suggestion=closest_name(name, available),
            )
    if not chosen:
        raise DataError("no objectives selected", file=dataset.source, field="objectives")
    positions = [available.index(name) for name in chosen]
    flips = [-1 if spec.directions.get(name, "higher") == "lower" else 1 for name in chosen]
    rows, skipped = [], dict(dataset.skipped)
    for row in dataset.rows:
        signs = tuple(row.signs[p] * f for p, f in zip(positions, flips, strict=True))
        if all(s == 0 for s in signs):
            add_skip(skipped, ALL_ZERO)
            continue
        rows.append(replace(row, signs=signs))
    return PreferenceDataset(tuple(chosen), reindexed(rows), skipped, dataset.source)


def check_options(records: Records, options: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Adapter options with defaults filled in; an unknown option is a :class:`DataError`."""
    for key in options:
        if key not in allowed:
            raise DataError(
                f"unknown option; this adapter takes {', '.join(allowed) or 'none'}",
                file=records.name,
                field=f"options.{key}",
                suggestion=closest_name(str(key), allowed),
            )
    return {**allowed, **options}


def sign_of(difference: float) -> int:
    """+1, -1 or 0 by the sign of ``difference``."""
    return (difference > 0) - (difference < 0)
