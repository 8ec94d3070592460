"""nvidia/HelpSteer2: single responses with 0-4 attribute scores, paired per prompt.

Columns used: ``prompt``, ``response`` and the integer attributes ``helpfulness``, ``correctness``,
``coherence``, ``complexity``, ``verbosity`` (the objectives, in that order; choose some with
``spec.objectives``). Pairing rule: rows with the same prompt text are grouped (in order of first
appearance); every pair ``(i, j)``, ``i < j`` in file order, gives one row with response 1 = row
``i`` and, per attribute, the sign of ``score_i - score_j``. Higher scores are preferred unless
``spec.directions`` says ``"lower"`` (e.g. ``{"verbosity": "lower"}``). Rows with an empty response
are left out before pairing, pairs of identical responses are skipped, and a prompt left with one
response gives no pair (all three counted in ``skipped`` and logged).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from raco.data.collect import RowCollector, sign_of
from raco.data.errors import DataError
from raco.data.schema import PreferenceDataset
from raco.data.sources import Records, get_field
from raco.data.spec import DataSpec
from raco.data.validate import check_response, is_blank

ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
EMPTY_ROW = "row with empty response"


def load_helpsteer2(records: Records, spec: DataSpec) -> PreferenceDataset:
    """Pairs of HelpSteer2 responses to the same prompt, one sign per attribute."""
    records.require("prompt", "response", *ATTRIBUTES)
    collector = RowCollector(records, ATTRIBUTES, spec.on_invalid, bad_pairs="skip")
    groups: dict[Any, list[tuple[int, Any, tuple[int, ...]]]] = {}
    for number, row in records.numbered():
        with collector.at(number):
            prompt = get_field(row, "prompt")
            if not isinstance(prompt, str):
                raise DataError(f"must be text, got {type(prompt).__name__}", field="prompt")
            response = get_field(row, "response")
            if is_blank(response):
                collector.skip(EMPTY_ROW)
                continue
            check_response(response, "response")
            scores = tuple(_score(row, name) for name in ATTRIBUTES)
            groups.setdefault(prompt, []).append((number, response, scores))
    for prompt, members in groups.items():
        if len(members) == 1:
            collector.skip("prompt with a single response")
        for (number, first, scores_1), (_, second, scores_2) in combinations(members, 2):
            with collector.at(number):
                signs = tuple(sign_of(a - b) for a, b in zip(scores_1, scores_2, strict=True))
                collector.add(prompt, first, second, signs, fields=("prompt", "response", "response"))
    return collector.dataset()


def _score(row: dict[str, Any], name: str) -> int:
    value = get_field(row, name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value != int(value)
        or not 0 <= value <= 4
    ):
        raise DataError(f"must be an integer score from 0 to 4, got {value!r}", field=name)
    return int(value)
