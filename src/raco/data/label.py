"""``raco data label``: derive an objective's signs by scoring both responses of every pair.

The paper's authors derived *faithfulness* for their three-objective Reddit set by scoring both
summaries of each pair; this command does the same with any scorer of :mod:`raco.eval.scorers`:

    sign = +1 if score(response_1) is better than score(response_2) by more than the margin,
           -1 if it is worse by more than the margin, 0 otherwise (a tie),

where "better" is higher, or lower with ``--lower``. A pair with a response the scorer could not score
(NaN, :class:`raco.eval.scorers.BadScore`) gets 0 and is reported by its row, or stops the command
with ``--on-bad error``.

The data is read as ``raco data inspect`` reads it (same ``--data.*`` flags); every source row is
written back unchanged, as JSON Lines, with the new sign column added: ``raco_s_<objective>`` in the
pairwise and TRL layouts (so the output loads with the new objective and no mapping), the capitalised
label column (``Faithfulness``) in RedditSummary-Alignment's label layout, and the mapped column when
``--data.labels`` is given. Adapters that turn one source row into several pairs, or that read only
their own label columns, are refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raco.atomic import atomic_write
from raco.config import DataConfig
from raco.config_tree import ConfigError
from raco.data.adapters import detect_adapter, get_adapter
from raco.data.adapters.generic import DEFAULT_OBJECTIVE, SIGN_PREFIX, label_columns
from raco.data.adapters.raco_reddit import LABELS, OPTIONAL_LABELS
from raco.data.errors import DataError
from raco.data.inspect import DATA_FLAGS, MAPPING_METAVARS, SIGN_KEYS, inspect_spec
from raco.data.schema import prompt_text, response_text
from raco.data.sources import JSONL_SUFFIXES, Records, load_records, quiet_progress_bars
from raco.data.spec import DataSpec

DESCRIPTION = """\
Add a sign column for a derived objective to a pairwise preference file: both responses of every pair
are scored with SPEC (a scorer of `raco eval`, docs/eval.md) and the new column holds
+1 (response 1 scores better by more than M), -1 (response 2 does) or 0 (a tie, or a response the
scorer could not score). "Better" is higher, or lower with --lower. DATA is read as
`raco data inspect` reads it (same --data.* flags); every row is written to FILE (JSON Lines) with
its columns kept and the new one added (raco_s_NAME in the pairwise and TRL layouts).

example: raco data label train.jsonl --scorer length:unit=words --objective concise --lower \\
             --margin 5 --output train.labelled.jsonl
(docs/data.md, "Deriving an objective: raco data label")"""

LABELLED_ADAPTERS = ("pairwise", "trl", "raco_reddit")
"""Adapters that read one pair per source row and can read an added sign column."""

CHUNK = 512
"""Pairs per scorer call (both responses of each: 2 × CHUNK rows); the progress bar counts them."""

LABEL_FLAGS = tuple(name for name in DATA_FLAGS if name not in ("train", "directions"))
"""The ``--data.*`` flags of ``raco data inspect`` that say how to read DATA (directions do not apply:
the signs of existing objectives are copied, not read)."""


@dataclass
class LabelSummary:
    """What :func:`label_records` did: rows written, the new column, its sign counts, the pairs with an
    unscored response (``(row number, reason)``) and the source rows the adapter did not pair."""

    rows: int
    column: str
    signs: dict[str, int]
    unscored: list[tuple[int, str]] = field(default_factory=list)
    unpaired: list[int] = field(default_factory=list)
    added: dict[str, int] = field(default_factory=dict)  # constant columns written besides `column`
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- command line


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raco data label``."""
    parser.add_argument("data", metavar="DATA", help="pairwise file/folder or HF dataset name")
    parser.add_argument("--scorer", required=True, metavar="SPEC", help="scorer spec, e.g. length:unit=words")
    parser.add_argument("--objective", required=True, metavar="NAME", help="name of the derived objective")
    parser.add_argument("--output", required=True, metavar="FILE", help="labelled copy of DATA (.jsonl)")
    parser.add_argument("--lower", action="store_true", help="lower scores are better (default: higher)")
    parser.add_argument(
        "--margin", type=float, default=0.0, metavar="M", help="score differences of at most M are ties (0)"
    )
    parser.add_argument(
        "--reference",
        metavar="prompt|COLUMN",
        help="reference text for scorers that need one (rouge, relevance:to=reference): "
        "the prompt or a column",
    )
    parser.add_argument(
        "--on-bad",
        choices=("zero", "error"),
        default="zero",
        help="a response the scorer cannot score: sign 0 and reported (zero, default) or stop (error)",
    )
    parser.add_argument(
        "--overwrite-column", action="store_true", help="replace the objective's column if DATA has it"
    )
    group = parser.add_argument_group("data options (as in `raco data inspect` and `raco train`)")
    fields = {f.name: f for f in dataclasses.fields(DataConfig)}
    for name in LABEL_FLAGS:
        group.add_argument(
            f"--data.{name}",
            dest=f"data:{name}",
            metavar=MAPPING_METAVARS.get(name, name.upper()),
            action="append" if name in MAPPING_METAVARS else "store",
            default=None,
            help=fields[name].metadata.get("help", "").replace("%", "%%"),
        )
    parser.set_defaults(config=None, objectives=None, path_or_name=None)


def run_label(args: argparse.Namespace) -> int:
    """Label the data ``args`` name and write it; bad input raises :class:`DataError`."""
    try:
        return _run_label(args)
    except ConfigError as err:  # a scorer spec or a scorer that cannot be built: one paragraph
        raise DataError(str(err)) from None


def _run_label(args: argparse.Namespace) -> int:
    from raco.eval.scorers import ObjectiveScorer, make_scorer

    output = _check_arguments(args)
    objective = ObjectiveScorer(args.scorer, "lower" if args.lower else "higher")  # checks the spec
    args.path_or_name = args.data
    spec = inspect_spec(args)
    quiet_progress_bars()
    assert spec.path_or_name is not None
    records = load_records(
        spec.path_or_name,
        split=spec.split,
        config_name=spec.config_name,
        data_dir=spec.data_dir,
        revision=spec.revision,
    )
    if args.reference not in (None, "prompt"):
        records.require(args.reference)
    scorer = make_scorer(objective.scorer)
    if scorer.needs_reference and args.reference is None:
        raise DataError(
            f"scorer {scorer.name} compares each response with a reference text: give --reference prompt "
            "(the pair's prompt) or --reference COLUMN",
            field="--reference",
        )

    def score(prompts: list[str], responses: list[str], refs: list[str] | None) -> list[Score]:
        scores = scorer.run(prompts, responses, refs)
        reasons: dict[int, Score] = {bad.row: bad.reason for bad in scores.bad}
        return [reasons.get(i, v) for i, v in enumerate(scores.values)]

    rows, summary = label_records(
        records,
        spec,
        args.objective,
        score,
        compare=objective.compare,
        margin=args.margin,
        reference=args.reference,
        overwrite=args.overwrite_column,
        stop_on_bad=args.on_bad == "error",
    )
    write_jsonl(output, rows)
    print(format_summary(summary, records, output, scorer.name, args))
    return 0


def _check_arguments(args: argparse.Namespace) -> Path:
    name = args.objective.strip()
    if not name or any(c in name for c in ",=: "):
        raise DataError(
            f"expected a name without spaces, ',', '=' or ':', got {args.objective!r}", field="--objective"
        )
    args.objective = name
    if not math.isfinite(args.margin) or args.margin < 0:
        raise DataError(f"must be a number >= 0, got {args.margin}", field="--margin")
    output = Path(args.output)
    if output.suffix.lower() not in JSONL_SUFFIXES:
        raise DataError(
            f"the output is written as JSON Lines: give a file ending in {' or '.join(JSONL_SUFFIXES)}",
            file=args.output,
        )
    if output.is_dir():
        raise DataError("is a folder; give a file name", file=args.output)
    return output


# ----------------------------------------------------------------------------- labelling

Score = float | str
"""A scorer's value for one row, or why it could not be scored."""
ScoreBatch = Callable[[list[str], list[str], list[str] | None], list[Score]]


def label_records(
    records: Records,
    spec: DataSpec,
    objective: str,
    score: ScoreBatch,
    *,
    compare: Callable[[float, float, float], int],
    margin: float = 0.0,
    reference: str | None = None,
    overwrite: bool = False,
    stop_on_bad: bool = False,
) -> tuple[list[dict[str, Any]], LabelSummary]:
    """Every row of ``records`` with a sign column for ``objective`` added, and what was done.

    ``score(prompts, responses, references)`` gives one number (or the reason it has none) per row;
    ``compare(a, b, margin)`` turns the scores of response 1 and response 2 into +1/0/-1.
    """
    layout = _layout(records, _adapter(records, spec))
    column, notes = target_column(layout, spec, objective)
    if column in records.columns and not overwrite:
        raise DataError(
            f"the data already has this column (objective {objective!r}); "
            "give --overwrite-column to replace it",
            file=records.name,
            field=column,
        )
    source = [{k: v for k, v in row.items() if k != column} for row in records.rows]
    added = _implicit_objective(records, spec, layout, column)
    numbers, texts = _pairs(records, spec, source, column)
    refs = None
    if reference is not None:
        rows = dict(zip((n for n, _ in records.numbered()), source, strict=True))
        refs = [
            text[0] if reference == "prompt" else _reference(rows[number], reference)
            for number, text in zip(numbers, texts, strict=True)
        ]
    signs, unscored = _signs(texts, refs, numbers, score, compare, margin, stop_on_bad, records)
    out = [
        {**row, **added, column: signs.get(number, 0)}
        for (number, _), row in zip(records.numbered(), source, strict=True)
    ]
    counts = {"+1": 0, "-1": 0, "0": 0}
    for row in out:
        counts[SIGN_KEYS[row[column]]] += 1
    paired = set(numbers)
    unpaired = [n for n, _ in records.numbered() if n not in paired]
    return out, LabelSummary(len(out), column, counts, unscored, unpaired, added, notes)


def _adapter(records: Records, spec: DataSpec) -> str:
    """The adapter that reads ``records``; one that cannot read an added column back is refused."""
    adapter = detect_adapter(records, spec) if spec.adapter == "auto" else spec.adapter
    get_adapter(adapter)  # an unknown name: the adapters' own message
    if adapter not in LABELLED_ADAPTERS:
        why = (
            "makes several pairs of a row"
            if adapter in ("ultrafeedback", "helpsteer2")
            else ("reads only its own label columns")
        )
        raise DataError(
            f"the {adapter} adapter {why}, so an added sign column could not be read back; label data "
            f"in the {', '.join(LABELLED_ADAPTERS)} layouts (e.g. write it as prompt/response_1/"
            "response_2 first)",
            file=records.name,
            field="adapter",
        )
    return adapter


def _pairs(
    records: Records, spec: DataSpec, source: list[dict[str, Any]], column: str
) -> tuple[list[int], list[tuple[str, str, str]]]:
    """(source row number, (prompt, response 1, response 2) texts) of every pair the adapter reads.

    The adapter reads a copy with ``column`` set to 0 on every row, so a pairwise file without sign
    columns (or with a bad old ``column``, under --overwrite-column) still yields its pairs."""
    adapter = detect_adapter(records, spec) if spec.adapter == "auto" else spec.adapter
    copy = Records(
        records.name,
        (*(c for c in records.columns if c != column), column),
        [{**row, column: 0} for row in source],
        records.numbers,
        records.by_line,
    )
    pairs = get_adapter(adapter)(copy, spec).rows
    numbers = [int(str(row.source).rsplit(":", 1)[1]) for row in pairs]
    texts = [
        (prompt_text(row.prompt), response_text(row.response_1), response_text(row.response_2))
        for row in pairs
    ]
    return numbers, texts


def _layout(records: Records, adapter: str) -> str:
    """``pairwise``, ``trl`` or ``reddit_labels`` (RedditSummary-Alignment's Summary_A/B layout)."""
    if adapter == "raco_reddit":
        return (
            "trl" if "Summary_A" not in records.columns and "chosen" in records.columns else "reddit_labels"
        )
    return adapter


def target_column(layout: str, spec: DataSpec, objective: str) -> tuple[str, list[str]]:
    """The column the new signs go to (the one the layout reads for ``objective``), and notes on how
    to load the output when it would not be read without a mapping."""
    if spec.labels:
        column = spec.labels.get(objective, objective)
        if objective in spec.labels:
            return column, []
        mapping = ",".join(f"{k}={v}" for k, v in {**spec.labels, objective: column}.items())
        return column, [f"load the output with --data.labels {mapping}"]
    if layout == "reddit_labels":
        known = {**LABELS, **OPTIONAL_LABELS}
        if objective in known:
            return known[objective], []
        mapping = ",".join(f"{k}={v}" for k, v in {**LABELS, objective: objective}.items())
        return objective, [f"load the output with --data.labels {mapping}"]
    return SIGN_PREFIX + objective, []


def _implicit_objective(records: Records, spec: DataSpec, layout: str, column: str) -> dict[str, int]:
    """A TRL file without sign columns loads as one objective with +1 on every row; once a sign column
    is added that objective would vanish, so its column is written too (``raco_s_preference: 1``)."""
    if layout != "trl" or spec.labels:
        return {}
    others = [c for c in label_columns(records, spec).values() if c != column]
    if others:
        return {}
    name = (
        spec.objectives[0] if spec.objectives is not None and len(spec.objectives) == 1 else DEFAULT_OBJECTIVE
    )
    implicit = SIGN_PREFIX + name
    return {} if implicit == column else {implicit: 1}


def _reference(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if isinstance(value, list):
        return response_text(value)
    return "" if value is None else str(value)


def _signs(
    texts: Sequence[tuple[str, str, str]],
    refs: list[str] | None,
    numbers: Sequence[int],
    score: ScoreBatch,
    compare: Callable[[float, float, float], int],
    margin: float,
    stop_on_bad: bool,
    records: Records,
) -> tuple[dict[int, int], list[tuple[int, str]]]:
    """Sign per source row number, and the pairs with an unscored response (row number, reason)."""
    from tqdm.auto import tqdm

    signs: dict[int, int] = {}
    unscored: list[tuple[int, str]] = []
    with tqdm(total=len(texts), desc="label", unit="pair", disable=None) as bar:
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            size = len(chunk)
            prompts = [t[0] for t in chunk] * 2
            responses = [t[1] for t in chunk] + [t[2] for t in chunk]
            chunk_refs = None if refs is None else refs[start : start + size] * 2
            values = score(prompts, responses, chunk_refs)
            for i in range(size):
                number, first, second = numbers[start + i], values[i], values[size + i]
                if isinstance(first, str) or isinstance(second, str):
                    which = "response 1" if isinstance(first, str) else "response 2"
                    reason = f"{which} {first if isinstance(first, str) else second}"
                    if stop_on_bad:
                        raise records.error(number, f"not scored: {reason} (--on-bad error)")
                    unscored.append((number, reason))
                    signs[number] = 0
                else:
                    signs[number] = compare(first, second, margin)
            bar.update(size)
    return signs, unscored


# ----------------------------------------------------------------------------- output


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` as JSON Lines, atomically; a value JSON cannot hold is a :class:`DataError`."""
    lines = []
    for number, row in enumerate(rows, start=1):
        try:
            lines.append(json.dumps(row, ensure_ascii=False))
        except (TypeError, ValueError) as err:
            raise DataError(f"cannot be written as JSON: {err}", row=number) from None

    def write(tmp: Path) -> None:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    atomic_write(path, write)


def format_summary(
    summary: LabelSummary, records: Records, output: Path, scorer: str, args: argparse.Namespace
) -> str:
    """The printed report: rows, sign counts, unscored and unpaired rows, margin."""
    unit = "line" if records.by_line else "row"
    better = "lower" if args.lower else "higher"
    counts = summary.signs
    lines = [
        f"labelled {records.name} -> {output}",
        f"objective {args.objective}: column {summary.column}, scorer {scorer}, {better} is better, "
        f"margin {args.margin:g}",
        f"rows: {summary.rows}",
        f"signs: +1 {counts['+1']}  -1 {counts['-1']}  0 {counts['0']}",
        f"unscored rows (sign 0): {len(summary.unscored)}",
    ]
    lines.extend(f"  {unit} {number}: {reason}" for number, reason in summary.unscored[:10])
    if len(summary.unscored) > 10:
        lines.append(f"  and {len(summary.unscored) - 10} more")
    if summary.unpaired:
        shown = ", ".join(str(n) for n in summary.unpaired[:10])
        lines.append(f"rows the adapter skipped (sign 0): {len(summary.unpaired)} ({unit}s {shown})")
    lines.extend(
        f"also written: {name} = {value} on every row (the data's implicit objective)"
        for name, value in summary.added.items()
    )
    lines.extend(f"note: {note}" for note in summary.notes)
    return "\n".join(lines)
