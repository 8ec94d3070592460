"""Preference data: schema, loaders, built-in dataset adapters, tokenisation and collation.

Every source becomes a :class:`PreferenceDataset` of :class:`PreferenceRow` (a prompt, two
responses, one sign per objective); :func:`tokenize_row` and :class:`PairCollator` turn rows into
padded pair batches. Bad input raises :class:`DataError` naming file, row and field.

Loading and inspecting data need neither torch nor transformers: the tokenisation and collation
names are imported on first use, so ``raco data inspect`` starts fast.
"""

from typing import TYPE_CHECKING, Any

from raco.data.adapters import ADAPTERS, detect_adapter
from raco.data.errors import DataError
from raco.data.inspect import dataset_stats
from raco.data.load import load_preference_data, merge_separate
from raco.data.schema import Message, PreferenceDataset, PreferenceRow, Text
from raco.data.sources import Records, load_records
from raco.data.spec import DataSpec
from raco.data.validate import parse_sign

if TYPE_CHECKING:
    from raco.data.collate import PairCollator
    from raco.data.tokenize import TokenizedPair, TruncationStats, tokenize_dataset, tokenize_row

_LAZY = {
    "PairCollator": "raco.data.collate",
    "TokenizedPair": "raco.data.tokenize",
    "TruncationStats": "raco.data.tokenize",
    "tokenize_dataset": "raco.data.tokenize",
    "tokenize_row": "raco.data.tokenize",
}


def __getattr__(name: str) -> Any:
    """The torch-backed names (:data:`_LAZY`), imported when first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raco.data' has no attribute {name!r}")


__all__ = [
    "ADAPTERS",
    "DataError",
    "DataSpec",
    "Message",
    "PairCollator",
    "PreferenceDataset",
    "PreferenceRow",
    "Records",
    "Text",
    "TokenizedPair",
    "TruncationStats",
    "dataset_stats",
    "detect_adapter",
    "load_preference_data",
    "load_records",
    "merge_separate",
    "parse_sign",
    "tokenize_dataset",
    "tokenize_row",
]
