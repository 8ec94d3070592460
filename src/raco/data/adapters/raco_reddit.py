"""RACOo/RedditSummary-Alignment, the RACO paper's summarisation data (Reddit TL;DR).

Two layouts are read (assumptions, documented in docs/data.md):

* Label layout: ``Summary_A`` and ``Summary_B`` as chat message lists and one label column per
  objective, ``Quality`` and ``Verbosity`` (and ``Faithfulness`` when present), holding which summary
  the objective prefers: ``"A"`` (sign +1), ``"B"`` (-1) or a tie form (0). Objectives are the lowered
  column names. The post is the leading non-assistant messages of the summaries when they hold the
  whole conversation, else the ``prompt`` column (option ``prompt_column``; ``Post``/``post`` are also
  looked for). If ``Verbosity`` marks the *more verbose* summary, set ``directions={"verbosity":
  "lower"}`` to prefer the concise one.
* TRL layout: ``prompt``/``chosen``/``rejected`` plus ``raco_s_<objective>`` sign columns, read as
  :func:`raco.data.adapters.generic.load_trl` does.

In both layouts pairs with an empty summary or two identical summaries are skipped, counted and logged.
"""

from __future__ import annotations

from typing import Any

from raco.data.adapters.generic import load_trl
from raco.data.collect import RowCollector, check_options, name_option
from raco.data.errors import DataError
from raco.data.schema import PreferenceDataset
from raco.data.sources import Records, get_field
from raco.data.spec import DataSpec
from raco.data.validate import check_messages, parse_sign

LABELS = {"quality": "Quality", "verbosity": "Verbosity"}
OPTIONAL_LABELS = {"faithfulness": "Faithfulness"}
PROMPT_COLUMNS = ("prompt", "Prompt", "post", "Post")
OPTIONS = {"prompt_column": (None, name_option)}


def load_raco_reddit(records: Records, spec: DataSpec) -> PreferenceDataset:
    """Rows of RedditSummary-Alignment in either layout."""
    if "Summary_A" not in records.columns and "chosen" in records.columns:
        return load_trl(records, spec, bad_pairs="skip")
    options = check_options(records, spec.options, OPTIONS)
    records.require("Summary_A", "Summary_B")
    labels = dict(spec.labels) if spec.labels else _default_labels(records)
    records.require(*labels.values())
    prompt_column = options["prompt_column"] or next(
        (c for c in PROMPT_COLUMNS if c in records.columns), None
    )
    if options["prompt_column"]:
        records.require(options["prompt_column"])
    collector = RowCollector(records, tuple(labels), spec.on_invalid, bad_pairs="skip")
    for number, row in records.numbered():
        with collector.at(number):
            prompt, first, second = _split_summaries(row, prompt_column)
            signs = tuple(parse_sign(get_field(row, column), column) for column in labels.values())
            collector.add(
                prompt, first, second, signs, fields=(prompt_column or "Summary_A", "Summary_A", "Summary_B")
            )
    return collector.dataset()


def _default_labels(records: Records) -> dict[str, str]:
    labels = dict(LABELS)
    labels.update({k: v for k, v in OPTIONAL_LABELS.items() if v in records.columns})
    return labels


def _split_summaries(row: dict[str, Any], prompt_column: str | None) -> tuple[Any, Any, Any]:
    """(prompt, summary A's assistant turn(s), summary B's)."""
    first = _as_messages(get_field(row, "Summary_A"), "Summary_A")
    second = _as_messages(get_field(row, "Summary_B"), "Summary_B")
    prefix_a, reply_a = _split_last_assistant(first)
    prefix_b, reply_b = _split_last_assistant(second)
    if prefix_a or prefix_b:
        if prefix_a != prefix_b:
            raise DataError(
                "Summary_A and Summary_B hold different conversations before the summary", field="Summary_B"
            )
        return prefix_a, reply_a, reply_b
    if prompt_column is None:
        raise DataError(
            "summaries hold no post and there is no prompt column (set options.prompt_column)", field="prompt"
        )
    return get_field(row, prompt_column), reply_a, reply_b


def _as_messages(value: Any, field: str) -> Any:
    return check_messages(value, field) if isinstance(value, list | dict) else value


def _split_last_assistant(value: Any) -> tuple[list[dict[str, Any]], Any]:
    """Messages before the final run of assistant messages, and that run. Text is all reply."""
    if not isinstance(value, list):
        return [], value
    cut = len(value)
    while cut > 0 and value[cut - 1]["role"] == "assistant":
        cut -= 1
    return value[:cut], value[cut:]
