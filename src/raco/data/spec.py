"""What to load: the small, typed description of a preference data source (``DataSpec``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from raco.data.errors import DataError, closest_name

OnInvalid = Literal["error", "skip"]
Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class DataSpec:
    """A preference data source and how to read it.

    Attributes:
        path_or_name: local file/folder (JSONL, JSON, Parquet, CSV) or Hugging Face dataset name.
        adapter: ``"auto"`` (detect from the columns) or a name in :data:`raco.registry.ADAPTER_NAMES`
            (the generic ``"pairwise"`` and ``"trl"`` layouts, then the built-in datasets).
        split, config_name, data_dir, revision: passed to ``datasets.load_dataset``.
        columns: column mapping, canonical role -> column of the source (roles: ``prompt``,
            ``response_1``, ``response_2``, ``chosen``, ``rejected``).
        labels: objective -> column holding its label (``+1/-1/0`` or ``A/B/tie``).
        objectives: keep only these objectives, in this order (default: all the source has).
        directions: objective -> ``"higher"`` (default) or ``"lower"``; ``"lower"`` flips the sign
            (e.g. ``{"verbosity": "lower"}``: the less verbose response is preferred).
        options: adapter-specific options (see each adapter; unknown options are errors).
        separate: separate-datasets mode: objective -> spec of a chosen/rejected dataset for that
            objective alone; the outer ``path_or_name`` is then unused.
        on_invalid: ``"error"`` (default) stops at the first invalid row; ``"skip"`` counts it in
            ``skipped`` under its reason and goes on.
    """

    path_or_name: str | None = None
    adapter: str = "auto"
    split: str = "train"
    config_name: str | None = None
    data_dir: str | None = None
    revision: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    objectives: tuple[str, ...] | None = None
    directions: Mapping[str, Direction] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    separate: Mapping[str, DataSpec] = field(default_factory=dict)
    on_invalid: OnInvalid = "error"

    def __post_init__(self) -> None:
        if self.on_invalid not in ("error", "skip"):
            raise DataError(f"must be 'error' or 'skip', got {self.on_invalid!r}", field="on_invalid")
        for objective, direction in self.directions.items():
            if direction not in ("higher", "lower"):
                raise DataError(
                    f"must be 'higher' or 'lower', got {direction!r}", field=f"directions.{objective}"
                )
        if self.path_or_name is None and not self.separate:
            raise DataError("give path_or_name, or separate datasets per objective", field="path_or_name")
        if self.objectives is not None and not isinstance(self.objectives, tuple):
            object.__setattr__(self, "objectives", tuple(self.objectives))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DataSpec:
        """Build from a config mapping (e.g. YAML); unknown keys are errors with a suggestion."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise DataError(
                    "unknown data option", field=str(key), suggestion=closest_name(str(key), known)
                )
        values = dict(values)
        if "separate" in values:
            values["separate"] = {
                name: part if isinstance(part, DataSpec) else cls.from_mapping(part)
                for name, part in dict(values["separate"]).items()
            }
        if values.get("objectives") is not None:
            values["objectives"] = tuple(values["objectives"])
        return cls(**values)


def spec_from_config(
    data: Any,
    *,
    path: str | None = None,
    split: str | None = None,
    objectives: tuple[str, ...] | None = None,
) -> DataSpec:
    """The spec of a training config's ``data`` section (:class:`raco.config.DataConfig`, read by
    attribute): its training source, or ``path``/``split`` instead (e.g. the held-out set). In
    separate-datasets mode (``data.separate``) the spec merges one dataset per objective."""
    separate = {} if path else {name: DataSpec.from_mapping(part) for name, part in data.separate.items()}
    return DataSpec(
        path_or_name=path or data.train or None,
        separate=separate,
        adapter=data.adapter,
        split=split or data.split,
        config_name=data.config_name,
        data_dir=data.data_dir,
        revision=data.revision,
        columns=dict(data.columns),
        labels=dict(data.labels),
        objectives=objectives,
        directions=dict(data.directions),
        options=dict(data.options),
        on_invalid=data.on_invalid,
    )
