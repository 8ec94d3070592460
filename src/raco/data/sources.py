"""Reading raw records from local files (JSONL, JSON, Parquet, CSV) and Hugging Face datasets.

JSON and JSONL are read with the :mod:`json` module so that every value keeps its own type and a
malformed line is reported with its line number (Arrow would unify or reject mixed types and hide
the offending row). Parquet, CSV, dataset folders and hub datasets go through ``datasets``, which is
imported only then (it takes a second to import). Single JSON, JSONL, CSV and TSV files may be
compressed (``.gz``, ``.bz2``, ``.xz``: how hh-rlhf and HelpSteer2 ship, e.g. ``train.jsonl.gz``).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from raco.data.errors import DataError, closest_name

JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (*JSONL_SUFFIXES, ".json", ".csv", ".tsv")
FILE_SUFFIXES = (*TEXT_SUFFIXES, ".parquet")
COMPRESSION: dict[str, Callable[..., io.BufferedIOBase]] = {
    ".gz": gzip.open,
    ".bz2": bz2.open,
    ".xz": lzma.open,
}
"""Compression suffix -> opener of the decompressed bytes (codecs that `datasets` also reads)."""
DEMO_DATASET = "raco-demo"
"""The name of raco's embedded demo dataset (``src/raco/demo_data``): splits ``train`` and ``eval``."""
_COMPRESSION_ERRORS = (OSError, EOFError, lzma.LZMAError)

_quiet = False


def quiet_progress_bars() -> None:
    """Silence the progress bars of ``datasets`` (now if imported, else once it is imported here)."""
    global _quiet
    _quiet = True
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def _datasets():
    import datasets

    if _quiet:
        datasets.disable_progress_bars()
    return datasets


@dataclass
class Records:
    """Raw rows (mappings) of one source, with the name used in error messages.

    ``numbers[i]`` is what errors call row ``i``: the 1-based line for JSONL (``by_line``), else the
    1-based row.
    """

    name: str
    columns: tuple[str, ...]
    rows: Sequence[dict[str, Any]]
    numbers: Sequence[int] | None = None
    by_line: bool = False

    def __len__(self) -> int:
        return len(self.rows)

    def numbered(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(row number, row)`` pairs in order."""
        for position, row in enumerate(self.rows):
            yield (self.numbers[position] if self.numbers is not None else position + 1), row

    def require(self, *names: str) -> None:
        """Raise :class:`DataError` naming the first missing column and the closest present one."""
        for name in names:
            if name not in self.columns:
                raise DataError(
                    f"column is missing; the columns are {', '.join(self.columns) or '(none)'}",
                    file=self.name,
                    field=name,
                    suggestion=closest_name(name, self.columns),
                )

    def error(self, number: int, message: str, field: str | None = None) -> DataError:
        """A :class:`DataError` located at row (or line) ``number`` of this source."""
        return DataError(message, file=self.name, row=number, field=field, line=self.by_line)


def get_field(row: dict[str, Any], name: str) -> Any:
    """``row[name]``, or a :class:`DataError` naming the field and the closest key of the row."""
    if name not in row:
        raise DataError("is missing from this row", field=name, suggestion=closest_name(name, row))
    return row[name]


def load_records(
    path_or_name: str,
    *,
    split: str = "train",
    config_name: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
) -> Records:
    """Rows of a local file or folder, of a Hugging Face dataset (name, config, split, revision), or of
    raco's embedded demo dataset (:data:`DEMO_DATASET`, split ``train`` or ``eval``).

    A single local file is one split: ``split`` applies to folders, hub datasets and the demo only.
    """
    path = Path(path_or_name).expanduser()
    if path_or_name == DEMO_DATASET and not path.exists():
        path = _demo_split(split)
    if path.is_file():
        records = _load_file(path)
    elif path.is_dir():
        records = _load_hf(str(path), split=split, config_name=config_name, data_dir=data_dir, revision=None)
    elif _kind(path)[0] in FILE_SUFFIXES or path_or_name.startswith((".", "/", "~")):
        raise DataError(f"no such file (looked for {path.resolve()})", file=path_or_name)
    else:
        records = _load_hf(
            path_or_name, split=split, config_name=config_name, data_dir=data_dir, revision=revision
        )
    if len(records) == 0:
        raise DataError("contains no rows (empty file or split)", file=records.name)
    return records


def _demo_split(split: str) -> Path:
    """The file of one split of raco's embedded demo dataset (``raco.demo_data``)."""
    from raco import demo_data

    if split not in demo_data.SPLITS:
        raise DataError(
            f"has no split {split!r}; splits are {', '.join(demo_data.SPLITS)}",
            file=DEMO_DATASET,
            suggestion=closest_name(split, demo_data.SPLITS),
        )
    return demo_data.path(split)


def _kind(path: Path) -> tuple[str, str | None]:
    """(file type suffix, compression suffix or None): ``train.jsonl.gz`` -> ``(".jsonl", ".gz")``."""
    suffix = path.suffix.lower()
    if suffix in COMPRESSION:
        return Path(path.stem).suffix.lower(), suffix
    return suffix, None


def _load_file(path: Path) -> Records:
    suffix, compression = _kind(path)
    if compression is not None and suffix not in TEXT_SUFFIXES:
        raise DataError(
            f"unknown file type {suffix + compression!r}; compressed ({', '.join(COMPRESSION)}) "
            f"files must be one of {', '.join(TEXT_SUFFIXES)}",
            file=str(path),
        )
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, compression)
    if suffix == ".json":
        return _read_json(path, compression)
    if suffix == ".parquet":
        return _load_builder("parquet", path)
    if suffix in (".csv", ".tsv"):
        return _decode_json_cells(_load_builder("csv", path, sep="\t" if suffix == ".tsv" else ","))
    known = ", ".join(FILE_SUFFIXES)
    raise DataError(
        f"unknown file type {path.suffix.lower() or '(none)'!r}; use one of {known} "
        f"(JSON/CSV also compressed: {', '.join(COMPRESSION)})",
        file=str(path),
    )


@contextlib.contextmanager
def _open_binary(path: Path, compression: str | None) -> Iterator[IO[bytes] | io.BufferedIOBase]:
    """The file's bytes, decompressed; a damaged archive is a :class:`DataError` naming the file."""
    try:
        with COMPRESSION[compression](path, "rb") if compression else path.open("rb") as handle:
            yield handle
    except _COMPRESSION_ERRORS as err:
        problem = f"is not a valid {compression} file" if compression else "cannot be read"
        raise DataError(f"{problem}: {err}", file=str(path)) from None


def _decode(raw: bytes, path: Path, number: int | None, first: bool) -> str:
    """UTF-8 text of one line (or the whole file); a leading byte-order mark is dropped."""
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"is not UTF-8 text (byte {err.start + 1} of the {'line' if number else 'file'}: "
            f"{raw[err.start : err.start + 1]!r}); convert the file to UTF-8",
            file=str(path),
            row=number,
            line=number is not None,
        ) from None


def _read_jsonl(path: Path, compression: str | None = None) -> Records:
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    with _open_binary(path, compression) as handle:
        for number, raw in enumerate(handle, start=1):
            line = _decode(raw, path, number, first=number == 1)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"malformed JSON: {err.msg} (column {err.colno})", file=str(path), row=number, line=True
                ) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"expected a JSON object, got {type(row).__name__}", file=str(path), row=number, line=True
                )
            rows.append(row)
            numbers.append(number)
    return Records(str(path), _columns(rows), rows, numbers, by_line=True)


def _read_json(path: Path, compression: str | None = None) -> Records:
    with _open_binary(path, compression) as handle:
        text = _decode(handle.read(), path, None, first=True)
    if not text.strip():
        return Records(str(path), (), [])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if "\n{" in text.strip():  # JSON Lines saved as .json, as `datasets` accepts
            return _read_jsonl(path, compression)
        raise DataError(
            f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}", file=str(path)
        ) from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]} / {"train": [...]}
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"expected a list of JSON objects, got {type(data).__name__}", file=str(path))
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object, got {type(row).__name__}", file=str(path), row=number)
    return Records(str(path), _columns(data), data)


def _columns(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return tuple(seen)


def _load_builder(builder: str, path: Path, **kwargs: Any) -> Records:
    """One file through a ``datasets`` builder (which decompresses ``.gz``/``.bz2``/``.xz`` itself)."""
    if path.stat().st_size == 0 or _is_empty_archive(path):
        return Records(str(path), (), [])
    datasets = _datasets()
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as err:  # datasets raises many types; report them all as bad input
        raise DataError(f"could not be read as {builder}: {_first_line(err)}", file=str(path)) from None
    return Records(str(path), tuple(table.column_names), table)


def _decode_json_cells(records: Records) -> Records:
    """CSV cannot hold lists: cells that are JSON arrays (chat messages) are decoded."""
    rows = []
    for row in records.rows:
        decoded = dict(row)
        for key, value in row.items():
            if isinstance(value, str) and value.lstrip().startswith("["):
                with contextlib.suppress(json.JSONDecodeError):
                    decoded[key] = json.loads(value)
        rows.append(decoded)
    return Records(records.name, records.columns, rows)


def _is_empty_archive(path: Path) -> bool:
    compression = _kind(path)[1]
    if compression is None:
        return False
    with _open_binary(path, compression) as handle:
        return not handle.read(1)


def _load_hf(
    name: str, *, split: str, config_name: str | None, data_dir: str | None, revision: str | None
) -> Records:
    datasets = _datasets()

    label = name + (f" ({config_name})" if config_name else "") + (f" [{data_dir}]" if data_dir else "")
    try:
        if Path(name, "state.json").is_file() or Path(name, "dataset_dict.json").is_file():
            table = datasets.load_from_disk(name)
        else:
            table = datasets.load_dataset(
                name, config_name, split=split, data_dir=data_dir, revision=revision
            )
    except Exception as err:  # network, missing split/config, bad files: all are input errors here
        raise DataError(f"could not load dataset split {split!r}: {_first_line(err)}", file=label) from None
    if isinstance(table, datasets.DatasetDict):
        if split not in table:
            raise DataError(
                f"has no split {split!r}; splits are {', '.join(table)}",
                file=label,
                suggestion=closest_name(split, table),
            )
        table = table[split]
    return Records(f"{label}:{split}", tuple(table.column_names), table)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
