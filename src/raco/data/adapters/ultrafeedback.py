"""openbmb/UltraFeedback (fine-grained): one prompt, several rated completions.

Columns used: ``instruction`` and ``completions``, a list of ``{"model", "response", "annotations",
...}`` where ``annotations[aspect]`` is ``{"Rating": "1".."5" or "N/A", "Rationale": ...}`` (a
one-element list of such mappings is also accepted) for the aspects ``helpfulness``, ``honesty``,
``instruction_following`` and ``truthfulness`` (the objectives, in that order).

Pairing rule: every pair of completions ``(i, j)`` with ``i < j`` in list order gives one row with
response 1 = completion ``i``; the sign of an aspect is the sign of ``rating_i - rating_j``, and 0
when either rating is ``"N/A"`` or missing. Completions with an empty response are left out, pairs
with identical responses skipped (both counted in ``skipped`` and logged); rows whose signs are all 0 are
skipped later like everywhere else. Option ``max_pairs_per_prompt`` (default: all) keeps the first
pairs in that order.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from raco.data.collect import RowCollector, check_options, count_option, sign_of
from raco.data.errors import DataError
from raco.data.schema import PreferenceDataset
from raco.data.sources import Records, get_field
from raco.data.spec import DataSpec

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
OPTIONS = {"max_pairs_per_prompt": (None, count_option)}


def load_ultrafeedback(records: Records, spec: DataSpec) -> PreferenceDataset:
    """Pairs of UltraFeedback completions with one sign per aspect."""
    options = check_options(records, spec.options, OPTIONS)
    limit = options["max_pairs_per_prompt"]
    records.require("instruction", "completions")
    collector = RowCollector(records, ASPECTS, spec.on_invalid, bad_pairs="skip")
    for number, row in records.numbered():
        with collector.at(number):
            prompt = get_field(row, "instruction")
            completions = _rated_completions(get_field(row, "completions"), collector)
            pairs = list(combinations(completions, 2))
            for (response_i, ratings_i), (response_j, ratings_j) in pairs[:limit]:
                signs = tuple(_compare(ratings_i[a], ratings_j[a]) for a in ASPECTS)
                collector.add(
                    prompt, response_i, response_j, signs, fields=("instruction", "response", "response")
                )
    return collector.dataset()


def _rated_completions(value: Any, collector: RowCollector) -> list[tuple[str, dict[str, float | None]]]:
    if not isinstance(value, list):
        raise DataError(f"must be a list of completions, got {type(value).__name__}", field="completions")
    rated = []
    for position, completion in enumerate(value):
        field = f"completions[{position}]"
        if not isinstance(completion, dict):
            raise DataError(f"must be a mapping, got {type(completion).__name__}", field=field)
        response = get_field(completion, "response")
        if not isinstance(response, str):
            raise DataError(f"must be text, got {type(response).__name__}", field=f"{field}.response")
        if not response.strip():
            collector.skip("completion with empty response")
            continue
        annotations = get_field(completion, "annotations")
        if not isinstance(annotations, dict):
            raise DataError("must be a mapping of aspects", field=f"{field}.annotations")
        rated.append(
            (response, {a: _rating(annotations.get(a), f"{field}.annotations.{a}") for a in ASPECTS})
        )
    return rated


def _rating(value: Any, field: str) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DataError(f"must be a mapping with 'Rating', got {type(value).__name__}", field=field)
    rating = value.get("Rating")
    if rating is None or (isinstance(rating, str) and rating.strip().upper() in ("N/A", "NA", "")):
        return None
    try:
        return float(rating)
    except (TypeError, ValueError):
        raise DataError(f"Rating {rating!r} is not a number or 'N/A'", field=f"{field}.Rating") from None


def _compare(first: float | None, second: float | None) -> int:
    return 0 if first is None or second is None else sign_of(first - second)
