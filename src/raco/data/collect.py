"""Turning validated values into rows, and the shared last steps of every adapter.

``RowCollector`` validates each row, names the file and row of any error and, when the spec says
``on_invalid="skip"``, counts invalid rows instead of stopping. Built-in dataset adapters collect with
``bad_pairs="skip"``: a pair whose responses are identical or empty is a property of the published
data, not a mistake the user can fix, so it is counted and logged instead of stopping the load.
``finalize`` selects and orders objectives, applies directions, and skips (and counts) rows whose
every sign is 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal

from raco.config_tree import parse_bool
from raco.data.errors import DataError, closest_name
from raco.data.schema import PreferenceDataset, PreferenceRow, add_skip, reindexed
from raco.data.sources import Records
from raco.data.spec import DataSpec
from raco.data.validate import check_response, check_text, is_blank

ALL_ZERO = "all signs 0"
EMPTY_RESPONSE = "empty response"
IDENTICAL_RESPONSES = "identical responses"

logger = logging.getLogger("raco.data")


class RowCollector:
    """Collects :class:`PreferenceRow` objects for ``objectives`` from one :class:`Records` source."""

    def __init__(
        self,
        records: Records,
        objectives: Sequence[str],
        on_invalid: str = "error",
        bad_pairs: Literal["error", "skip"] = "error",
    ) -> None:
        """``bad_pairs="skip"`` (built-in dataset adapters): a pair with an empty response or two
        identical responses is counted (``"empty response"``, ``"identical responses"``) and logged;
        ``"error"`` (a user's own file): it is an invalid row like any other."""
        self.records = records
        self.objectives = tuple(objectives)
        self.on_invalid = on_invalid
        self.bad_pairs = bad_pairs
        self.rows: list[PreferenceRow] = []
        self.skipped: dict[str, int] = {}
        self._first: dict[str, int | None] = {}
        self._number: int | None = None

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
            self.skip(reason)
        finally:
            self._number = None

    def add(
        self,
        prompt: Any,
        response_1: Any,
        response_2: Any,
        signs: Sequence[int],
        fields: tuple[str, str, str] = ("prompt", "response_1", "response_2"),
    ) -> bool:
        """Validate one pair (call inside :meth:`at`) and keep it; False when it was skipped as a bad
        pair (``bad_pairs="skip"``)."""
        prompt = check_text(prompt, fields[0])
        if self.bad_pairs == "skip" and (is_blank(response_1) or is_blank(response_2)):
            self.skip(EMPTY_RESPONSE)
            return False
        first = check_response(response_1, fields[1])
        second = check_response(response_2, fields[2])
        if first == second:
            if self.bad_pairs == "skip":
                self.skip(IDENTICAL_RESPONSES)
                return False
            raise DataError("is identical to the other response", field=fields[2])
        source = f"{self.records.name}:{self._number}"
        self.rows.append(PreferenceRow(prompt, first, second, tuple(int(s) for s in signs), source))
        return True

    def skip(self, reason: str, count: int = 1) -> None:
        """Count source rows (or pairs) left out for ``reason`` (not an error)."""
        add_skip(self.skipped, reason, count)
        self._first.setdefault(reason, self._number)

    def dataset(self) -> PreferenceDataset:
        """Everything collected so far; each skip reason is logged once (count, first row)."""
        unit = "line" if self.records.by_line else "row"
        for reason, count in self.skipped.items():
            first = self._first.get(reason)
            where = f" (first at {unit} {first})" if first else ""
            logger.warning("%s: skipped %d: %s%s", self.records.name, count, reason, where)
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
    return PreferenceDataset(tuple(chosen), reindexed(rows), skipped, dataset.source, list(dataset.notes))


OptionParser = Callable[[Any], Any]
"""Converts an option value (from YAML, Python, or a ``key=value`` command-line string) or raises
``ValueError`` with what was expected."""


def check_options(
    records: Records, options: Mapping[str, Any], allowed: Mapping[str, tuple[Any, OptionParser]]
) -> dict[str, Any]:
    """Adapter options, parsed, with defaults filled in (``allowed``: name -> (default, parser)).

    An unknown option or a value its parser refuses is a :class:`DataError` naming ``options.NAME``.
    """
    parsed = {name: default for name, (default, _) in allowed.items()}
    for key, value in options.items():
        if key not in allowed:
            raise DataError(
                f"unknown option; this adapter takes {', '.join(allowed) or 'none'}",
                file=records.name,
                field=f"options.{key}",
                suggestion=closest_name(str(key), allowed),
            )
        try:
            parsed[key] = allowed[key][1](value)
        except ValueError as err:
            raise DataError(f"{err}, got {value!r}", file=records.name, field=f"options.{key}") from None
    return parsed


def flag_option(value: Any) -> bool:
    """true/false (also the strings true/false, yes/no, 1/0 of a command line)."""
    return parse_bool(value)


def count_option(value: Any) -> int | None:
    """A positive integer, or none/null for no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        return None
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a positive integer or none")
    try:
        number = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError("must be a positive integer or none") from None
    if number < 1:
        raise ValueError("must be a positive integer or none")
    return number


def name_option(value: Any) -> str | None:
    """A non-empty name (e.g. a column), or none/null."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty name")
    return value


def choice_option(*choices: str) -> OptionParser:
    """A parser accepting exactly one of ``choices``."""

    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be {' or '.join(repr(c) for c in choices)}")
        return value

    return parse


def sign_of(difference: float) -> int:
    """+1, -1 or 0 by the sign of ``difference``."""
    return (difference > 0) - (difference < 0)
