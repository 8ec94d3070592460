"""Adapters: one function per source layout, ``(Records, DataSpec) -> PreferenceDataset``."""

from __future__ import annotations

from collections.abc import Callable

from raco.data.adapters import hh_rlhf, pku_saferlhf, raco_reddit, ultrafeedback
from raco.data.adapters.generic import SIGN_PREFIX, load_pairwise, load_trl
from raco.data.adapters.helpsteer2 import load_helpsteer2
from raco.data.adapters.hh_rlhf import ASSISTANT, load_hh_rlhf
from raco.data.adapters.pku_saferlhf import load_pku_saferlhf
from raco.data.adapters.raco_reddit import load_raco_reddit
from raco.data.adapters.ultrafeedback import load_ultrafeedback
from raco.data.errors import DataError, closest_name
from raco.data.schema import PreferenceDataset
from raco.data.sources import Records
from raco.data.spec import DataSpec

Adapter = Callable[[Records, DataSpec], PreferenceDataset]

ADAPTERS: dict[str, Adapter] = {
    "pairwise": load_pairwise,
    "trl": load_trl,
    "pku_saferlhf": load_pku_saferlhf,
    "raco_reddit": load_raco_reddit,
    "ultrafeedback": load_ultrafeedback,
    "helpsteer2": load_helpsteer2,
    "hh_rlhf": load_hh_rlhf,
}
"""Name -> adapter; the names are listed in :data:`raco.registry.ADAPTER_NAMES` for the help texts
(kept equal, in order, by tests/test_registries.py)."""

ADAPTER_OPTIONS: dict[str, tuple[str, ...]] = {
    "pku_saferlhf": tuple(pku_saferlhf.OPTIONS),
    "raco_reddit": tuple(raco_reddit.OPTIONS),
    "ultrafeedback": tuple(ultrafeedback.OPTIONS),
    "hh_rlhf": tuple(hh_rlhf.OPTIONS),
}
"""Adapter -> the names of its ``options`` (adapters not listed take none)."""


def detect_adapter(records: Records, spec: DataSpec) -> str:
    """The adapter for ``records`` judged from its columns (and the column mapping of ``spec``)."""
    columns = set(records.columns) | set(spec.columns)
    if {"response_0", "response_1", "better_response_id"} <= columns:
        return "pku_saferlhf"
    if {"Summary_A", "Summary_B"} <= columns:
        return "raco_reddit"
    if {"instruction", "completions"} <= columns:
        return "ultrafeedback"
    if {"prompt", "response", "helpfulness"} <= columns:
        return "helpsteer2"
    if {"response_1", "response_2"} <= columns:
        return "pairwise"
    if {"chosen", "rejected"} <= columns:
        has_signs = any(c.startswith(SIGN_PREFIX) for c in columns)
        first = records.rows[0].get("chosen") if len(records) else None
        if (
            "prompt" not in columns
            and not has_signs
            and isinstance(first, str)
            and first.startswith("\n\nHuman:")
        ):
            return "hh_rlhf"
        return "trl"
    raise DataError(
        "cannot tell the data layout from its columns "
        f"({', '.join(records.columns)}); give an adapter ({', '.join(ADAPTERS)}) or a column mapping",
        file=records.name,
    )


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; an unknown name is a :class:`DataError` with a suggestion."""
    if name not in ADAPTERS:
        raise DataError(
            f"unknown adapter; adapters are {', '.join(ADAPTERS)}",
            field="adapter",
            suggestion=closest_name(name, ADAPTERS),
        )
    return ADAPTERS[name]


__all__ = ["ADAPTERS", "ADAPTER_OPTIONS", "ASSISTANT", "Adapter", "detect_adapter", "get_adapter"]
