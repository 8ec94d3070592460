"""Generic layouts: ``pairwise`` (prompt, response_1, response_2, sign columns) and TRL's
preference formats (``prompt``/``chosen``/``rejected``, explicit or implicit prompt, text or chat).

Sign columns are those named ``raco_s_<objective>``, or the ``labels`` mapping of the spec
(objective -> column). A TRL dataset without sign columns has one objective (the single name in
``spec.objectives`` or ``"preference"``) with sign +1 (chosen preferred) on every row.

The prompt follows TRL's ``maybe_extract_prompt``: when chosen and rejected hold whole conversations
(their first message is not an assistant turn) and the ``prompt`` column is text (as in
HuggingFaceH4/ultrafeedback_binarized), or there is no prompt, the prompt is their common leading
messages. A ``prompt`` of messages that chosen and rejected both repeat at their start is removed
from them.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from raco.data.collect import RowCollector
from raco.data.errors import DataError, closest_name
from raco.data.hints import label_hint
from raco.data.schema import PreferenceDataset
from raco.data.sources import Records, get_field
from raco.data.spec import DataSpec
from raco.data.validate import check_messages, parse_sign

SIGN_PREFIX = "raco_s_"
ROLES = ("prompt", "response_1", "response_2", "chosen", "rejected")
DEFAULT_OBJECTIVE = "preference"

logger = logging.getLogger("raco.data")


def column_names(records: Records, spec: DataSpec) -> dict[str, str]:
    """Canonical role -> source column, after the spec's column mapping (which is checked)."""
    for role, column in spec.columns.items():
        if role not in ROLES:
            raise DataError(
                f"unknown role in column mapping; roles are {', '.join(ROLES)}",
                field=f"columns.{role}",
                suggestion=closest_name(role, ROLES),
            )
        records.require(column)
    return {role: spec.columns.get(role, role) for role in ROLES}


def label_columns(records: Records, spec: DataSpec) -> dict[str, str]:
    """Objective -> label column: the spec's ``labels`` or every ``raco_s_<objective>`` column."""
    if spec.labels:
        records.require(*spec.labels.values())
        return dict(spec.labels)
    return {c[len(SIGN_PREFIX) :]: c for c in records.columns if c.startswith(SIGN_PREFIX)}


def unused_columns(records: Records, used: set[str]) -> list[str]:
    """The columns of ``records`` not in ``used`` (``raco_s_*`` sign columns count as used)."""
    return [c for c in records.columns if c not in used and not c.startswith(SIGN_PREFIX)]


def note_label_columns(dataset: PreferenceDataset, hint: str | None) -> PreferenceDataset:
    """Log ``hint`` (a :func:`raco.data.hints.label_hint`) once and keep it in ``dataset.notes``."""
    if hint:
        logger.warning("note: %s", hint)
        dataset.notes.append(hint)
    return dataset


def read_signs(row: dict[str, Any], labels: dict[str, str]) -> tuple[int, ...]:
    """One sign per objective from the row's label columns."""
    return tuple(parse_sign(get_field(row, column), column) for column in labels.values())


def load_pairwise(records: Records, spec: DataSpec) -> PreferenceDataset:
    """``prompt``, ``response_1``, ``response_2`` and sign columns (+1: response_1 preferred)."""
    names = column_names(records, spec)
    records.require(names["prompt"], names["response_1"], names["response_2"])
    labels = label_columns(records, spec)
    fields = (names["prompt"], names["response_1"], names["response_2"])
    unused = unused_columns(records, {*fields, *labels.values()})
    if not labels:
        hint = label_hint(records, unused, labels, None)
        raise DataError(
            f"no sign columns: add {SIGN_PREFIX}<objective> columns or a labels mapping"
            + (f"; {hint}" if hint else ""),
            file=records.name,
            field=f"{SIGN_PREFIX}<objective>",
        )
    collector = RowCollector(records, tuple(labels), spec.on_invalid)
    for number, row in records.numbered():
        with collector.at(number):
            prompt, first, second = (get_field(row, f) for f in fields)
            collector.add(prompt, first, second, read_signs(row, labels), fields=fields)
    loads_as = f"objective{'s' if len(labels) > 1 else ''} {', '.join(labels)}"
    return note_label_columns(collector.dataset(), label_hint(records, unused, labels, loads_as))


def load_trl(
    records: Records, spec: DataSpec, bad_pairs: Literal["error", "skip"] = "error"
) -> PreferenceDataset:
    """TRL preference rows: chosen is response 1, rejected response 2; prompt explicit or implicit.

    ``bad_pairs="skip"`` (for built-in datasets in this layout) counts pairs with an empty response or
    two identical responses instead of raising (see :class:`RowCollector`)."""
    names = column_names(records, spec)
    records.require(names["chosen"], names["rejected"])
    reject_misspelled_prompt(records, names["prompt"])
    labels = label_columns(records, spec)
    if labels:
        objectives = tuple(labels)
    elif spec.objectives is not None and len(spec.objectives) == 1:
        objectives = spec.objectives
    else:
        objectives = (DEFAULT_OBJECTIVE,)
    collector = RowCollector(records, objectives, spec.on_invalid, bad_pairs=bad_pairs)
    fields = (names["prompt"], names["chosen"], names["rejected"])
    for number, row in records.numbered():
        with collector.at(number):
            chosen, rejected = get_field(row, fields[1]), get_field(row, fields[2])
            prompt, chosen, rejected = trl_prompt(row.get(fields[0]), chosen, rejected, fields)
            signs = read_signs(row, labels) if labels else (1,)
            collector.add(prompt, chosen, rejected, signs, fields=fields)
    dataset = collector.dataset()
    if bad_pairs == "skip":  # a built-in dataset in this layout: its other columns are its own business
        return dataset
    if labels:
        loads_as = f"objective{'s' if len(labels) > 1 else ''} {', '.join(labels)}"
    else:
        loads_as = f"one objective `{objectives[0]}` (chosen preferred on every row)"
    unused = unused_columns(records, {*fields, *labels.values()})
    return note_label_columns(dataset, label_hint(records, unused, labels, loads_as))


def reject_misspelled_prompt(records: Records, prompt: str) -> None:
    """Without a prompt column TRL's implicit prompt is used; a column that looks like a misspelt
    ``prompt`` (close to it, but not containing it like ``prompt_id``) is an error, not ignored."""
    if prompt in records.columns:
        return
    near = closest_name(prompt, [c for c in records.columns if prompt.lower() not in c.lower()])
    if near is not None:
        raise DataError(
            f"no {prompt!r} column but a column {near!r}: map it (columns: {{prompt: {near}}} or "
            f"--column prompt={near}) or rename it; without a prompt column the prompt is taken from "
            "the common start of chosen and rejected",
            file=records.name,
            field=prompt,
            suggestion=near,
        )


def holds_conversation(value: Any) -> bool:
    """True for a list of chat messages that starts with a non-assistant turn (a whole conversation,
    prompt included, rather than the assistant reply alone)."""
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], dict)
        and value[0].get("role") not in (None, "assistant")
    )


def trl_prompt(prompt: Any, chosen: Any, rejected: Any, fields: tuple[str, str, str]) -> tuple[Any, Any, Any]:
    """(prompt, chosen reply, rejected reply) of one TRL row, explicit or implicit prompt.

    * no prompt (missing or null): the implicit prompt, :func:`split_implicit_prompt`;
    * chosen and rejected hold whole conversations and the prompt is text (TRL's
      ``maybe_extract_prompt`` case, e.g. ultrafeedback_binarized): the implicit prompt too;
    * chosen and rejected hold whole conversations and the prompt is messages they both start with:
      those messages are the prompt, the rest the replies;
    * otherwise the prompt is explicit and the replies are taken as they are.
    """
    if prompt is None:
        return split_implicit_prompt(chosen, rejected, fields)
    if not (holds_conversation(chosen) and holds_conversation(rejected)):
        return prompt, chosen, rejected
    if isinstance(prompt, str):
        return split_implicit_prompt(chosen, rejected, fields)
    if isinstance(prompt, list | dict):
        messages = check_messages(prompt, fields[0])
        first, second = check_messages(chosen, fields[1]), check_messages(rejected, fields[2])
        size = len(messages)
        for name, value in ((fields[1], first), (fields[2], second)):
            if value[:size] != messages:
                raise DataError(
                    "holds a whole conversation that does not start with the prompt's messages; give the "
                    "assistant reply alone, or leave the prompt out to take the common start of chosen "
                    "and rejected as the prompt",
                    field=name,
                )
        return messages, first[size:], second[size:]
    return prompt, chosen, rejected


def split_implicit_prompt(chosen: Any, rejected: Any, fields: tuple[str, str, str]) -> tuple[Any, Any, Any]:
    """Split two full conversations at the end of their common start (TRL's implicit prompt).

    Messages: the longest run of equal leading messages is the prompt. Text: the longest common
    prefix, moved back to just after the last whitespace so no word is cut (the whole common prefix
    when it has no whitespace); as in TRL, a space just before the cut starts the responses, so
    ``"The sky is blue."`` / ``"The sky is green."`` give ``"The sky is"``, ``" blue."``, ``" green."``.
    """
    if isinstance(chosen, list) and isinstance(rejected, list):
        first, second = check_messages(chosen, fields[1]), check_messages(rejected, fields[2])
        shared = 0
        while shared < min(len(first), len(second)) and first[shared] == second[shared]:
            shared += 1
        return first[:shared], first[shared:], second[shared:]
    if isinstance(chosen, str) and isinstance(rejected, str):
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        cut = shared
        while cut > 0 and not chosen[cut - 1].isspace():
            cut -= 1
        if cut == 0:
            cut = shared
        if cut > 0 and chosen[cut - 1] == " ":
            cut -= 1
        return chosen[:cut], chosen[cut:], rejected[cut:]
    raise DataError(
        f"chosen and rejected must both be text or both be chat messages without a prompt column, got "
        f"{type(chosen).__name__} and {type(rejected).__name__}",
        field=fields[2],
    )
