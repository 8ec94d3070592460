"""The loading entry point: ``DataSpec`` -> validated ``PreferenceDataset`` (no model involved)."""

from __future__ import annotations

from collections.abc import Mapping

from raco.data.adapters import detect_adapter, get_adapter
from raco.data.collect import finalize
from raco.data.errors import DataError
from raco.data.schema import PreferenceDataset, PreferenceRow, merge_skips, reindexed
from raco.data.sources import load_records
from raco.data.spec import DataSpec


def load_preference_data(spec: DataSpec) -> PreferenceDataset:
    """Load, adapt and validate the data ``spec`` describes.

    Raises :class:`DataError` (file, row, field) on bad input. Rows whose every sign is 0 are
    skipped and counted in ``skipped["all signs 0"]``.
    """
    if spec.separate:
        parts = {name: load_preference_data(_single(name, part)) for name, part in spec.separate.items()}
        merged = merge_separate(parts)
        return finalize(
            merged,
            DataSpec(path_or_name=merged.source, objectives=spec.objectives, directions=spec.directions),
        )
    assert spec.path_or_name is not None
    records = load_records(
        spec.path_or_name,
        split=spec.split,
        config_name=spec.config_name,
        data_dir=spec.data_dir,
        revision=spec.revision,
    )
    adapter = detect_adapter(records, spec) if spec.adapter == "auto" else spec.adapter
    dataset = get_adapter(adapter)(records, spec)
    return finalize(dataset, spec)


def _single(objective: str, part: DataSpec) -> DataSpec:
    """A per-objective spec: it must yield one objective; it is named ``objective``."""
    if part.objectives is not None and len(part.objectives) != 1:
        raise DataError(
            f"a separate dataset feeds one objective, got objectives {part.objectives}",
            file=part.path_or_name,
            field=f"separate.{objective}.objectives",
        )
    return part


def merge_separate(parts: Mapping[str, PreferenceDataset]) -> PreferenceDataset:
    """Merge one single-objective dataset per objective into rows of one schema.

    The rows of ``parts[name]`` keep their sign for objective ``name`` and get 0 for every other
    objective (the losses average an objective only over rows where its sign is non-zero). Rows are
    concatenated in the order of ``parts``; skip counts are summed.
    """
    objectives = tuple(parts)
    rows: list[PreferenceRow] = []
    for position, (name, part) in enumerate(parts.items()):
        if len(part.objectives) != 1:
            raise DataError(
                f"a separate dataset must have one objective, this one has {', '.join(part.objectives)}; "
                "select one with objectives",
                file=part.source,
                field=f"separate.{name}",
            )
        for row in part.rows:
            signs = tuple(row.signs[0] if i == position else 0 for i in range(len(objectives)))
            rows.append(PreferenceRow(row.prompt, row.response_1, row.response_2, signs, row.source))
    sources = ", ".join(str(p.source) for p in parts.values())
    notes = [note for part in parts.values() for note in part.notes]
    return PreferenceDataset(
        objectives, reindexed(rows), merge_skips(*(p.skipped for p in parts.values())), sources, notes
    )
