"""The one error type of the data layer: a bad input, named by file, row and field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DataError(ValueError):
    """Bad preference data, with where it is: ``file`` (or dataset name), ``row``, ``field``.

    ``row`` is 1-based: the data row of a table, or the line of a JSONL file when ``line=True``.
    ``str(err)`` is a single paragraph fit for a command-line message.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
        suggestion: str | None = None,
        line: bool = False,
    ) -> None:
        self.message = message
        self.file = file
        self.row = row
        self.field = field
        self.suggestion = suggestion
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"{'line' if self.line else 'row'} {self.row}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        text = (", ".join(where) + ": " if where else "") + self.message
        if self.suggestion is not None:
            text += f" (did you mean {self.suggestion!r}?)"
        return text

    def located(self, *, file: str | None = None, row: int | None = None, line: bool = False) -> DataError:
        """The same error with ``file``/``row`` filled in where they were unknown."""
        has_row = self.row is not None
        return DataError(
            self.message,
            file=self.file if self.file is not None else file,
            row=self.row if has_row else row,
            field=self.field,
            suggestion=self.suggestion,
            line=self.line if has_row else line,
        )


def closest_name(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name`` (case-insensitive match first), or None if none is close."""
    candidates = [str(c) for c in candidates]
    for candidate in candidates:
        if candidate.lower() == name.lower():
            return candidate
    lowered = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[matches[0]] if matches else None
