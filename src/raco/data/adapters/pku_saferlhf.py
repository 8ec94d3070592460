"""PKU-Alignment/PKU-SafeRLHF: one pair, two objectives (``helpful``, ``harmless``).

Columns used: ``prompt``, ``response_0``, ``response_1``, ``better_response_id`` (0/1, the more
helpful response), ``safer_response_id`` (0/1), and, when present, ``is_response_0_safe`` /
``is_response_1_safe`` (booleans; type-checked). ``response_0`` becomes response 1 of the row, so an
id of 0 gives sign +1 and an id of 1 gives -1.

Option ``harmless_from``: ``"safer_response_id"`` (default) or ``"is_safe"``: the sign favours the
safe response when exactly one of the two is safe, and is 0 when both or neither are safe.

Pairs with an empty response or two identical responses are skipped, counted and logged.
"""

from __future__ import annotations

from typing import Any

from raco.data.collect import RowCollector, check_options, choice_option
from raco.data.errors import DataError
from raco.data.schema import PreferenceDataset
from raco.data.sources import Records, get_field
from raco.data.spec import DataSpec

OBJECTIVES = ("helpful", "harmless")
OPTIONS = {"harmless_from": ("safer_response_id", choice_option("safer_response_id", "is_safe"))}
SAFE_FIELDS = ("is_response_0_safe", "is_response_1_safe")


def load_pku_saferlhf(records: Records, spec: DataSpec) -> PreferenceDataset:
    """Rows of PKU-SafeRLHF with signs (helpful, harmless)."""
    options = check_options(records, spec.options, OPTIONS)
    records.require("prompt", "response_0", "response_1", "better_response_id")
    if options["harmless_from"] == "is_safe":
        records.require(*SAFE_FIELDS)
    else:
        records.require("safer_response_id")
    collector = RowCollector(records, OBJECTIVES, spec.on_invalid, bad_pairs="skip")
    fields = ("prompt", "response_0", "response_1")
    for number, row in records.numbered():
        with collector.at(number):
            helpful = _id_sign(row, "better_response_id")
            safety = [_safe_flag(row, name) for name in SAFE_FIELDS if name in row]
            if options["harmless_from"] == "is_safe":
                harmless = int(safety[0]) - int(safety[1])
            else:
                harmless = _id_sign(row, "safer_response_id")
            prompt, first, second = (get_field(row, f) for f in fields)
            collector.add(prompt, first, second, (helpful, harmless), fields=fields)
    return collector.dataset()


def _id_sign(row: dict[str, Any], field: str) -> int:
    value = get_field(row, field)
    if isinstance(value, bool) or value not in (0, 1):
        raise DataError(f"must be 0 or 1 (the id of a response), got {value!r}", field=field)
    return 1 if value == 0 else -1


def _safe_flag(row: dict[str, Any], field: str) -> bool:
    value = row[field]
    if not isinstance(value, bool):
        raise DataError(f"must be true or false, got {value!r}", field=field)
    return value
