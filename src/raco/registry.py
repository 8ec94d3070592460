"""Torch-free name registries: every aggregator, loss, method, adapter and dtype raco knows by name.

The heavy registries (``raco.aggregators.AGGREGATORS``, ``raco.losses.LOSSES``,
``raco.data.adapters.ADAPTERS``) map these names to functions and import torch (or read data);
configuration loading, ``raco train --help`` and ``raco data inspect`` read only this module.
tests/test_registries.py checks that the heavy registries hold exactly these names, so they cannot
drift: a new aggregator, loss or adapter is its file plus its line here and in its heavy registry.

A *method* (``method.name``) is expanded once, by :func:`method_plan`, into the aggregator that
combines the per-objective gradients and an optional loss that replaces every objective's own loss;
the gradient engine sees only the aggregator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class AggregatorInfo:
    """What configuration needs to know of an aggregator without importing it.

    ``options``: option name -> the ``method`` config field it is read from (``None``: accepted by the
    function, e.g. through the Python API, but not exposed in the run configuration).
    """

    summary: str
    options: Mapping[str, str | None]
    scalarizable: bool = False  # a = w exactly: one backward of the weighted loss is exact
    uses_weights: bool = True  # False: the direction ignores the user weights (mgda)


AGGREGATORS: dict[str, AggregatorInfo] = {
    "raco": AggregatorInfo("clipped CAGrad", {"c": "c"}),
    "cagrad": AggregatorInfo("CAGrad", {"c": "c", "rescale": None}),
    "mgda": AggregatorInfo("min-norm point", {}, uses_weights=False),
    "weighted_sum": AggregatorInfo("DPO-LW", {}, scalarizable=True),
}
AGGREGATOR_NAMES = tuple(AGGREGATORS)

LOSS_NAMES = ("dpo", "ipo", "hinge", "simpo", "amopo")
REFERENCE_FREE_LOSSES = frozenset({"simpo", "amopo"})

GENERIC_ADAPTERS = ("pairwise", "trl")
DATASET_ADAPTERS = ("pku_saferlhf", "raco_reddit", "ultrafeedback", "helpsteer2", "hh_rlhf")
ADAPTER_NAMES = GENERIC_ADAPTERS + DATASET_ADAPTERS
"""Row schemas of ``data.adapter`` (besides ``auto``): generic layouts, then built-in datasets."""

DTYPE_NAMES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class MethodPlan:
    """A method expanded: the aggregator that combines the gradients and the loss (if any) that
    replaces every objective's own loss."""

    aggregator: str
    loss: str | None = None
    summary: str = ""

    @property
    def uses_weights(self) -> bool:
        """Whether the update direction depends on the objective weights."""
        return AGGREGATORS[self.aggregator].uses_weights

    @property
    def scalarizable(self) -> bool:
        """Whether ``method.path: scalarized`` (one backward of the weighted loss) is exact."""
        return AGGREGATORS[self.aggregator].scalarizable

    def objective_loss(self, loss: str) -> str:
        """The loss an objective configured with ``loss`` trains with under this method."""
        return self.loss or loss

    def needs_reference(self, losses: list[str] | tuple[str, ...]) -> bool:
        """Whether objectives configured with ``losses`` need a reference policy under this method."""
        return any(self.objective_loss(loss) not in REFERENCE_FREE_LOSSES for loss in losses)


METHODS: dict[str, MethodPlan] = {
    **{name: MethodPlan(name, summary=info.summary) for name, info in AGGREGATORS.items()},
    "amopo": MethodPlan("weighted_sum", loss="amopo", summary="static AMoPO loss, weighted sum"),
}
METHOD_NAMES = tuple(METHODS)


def method_plan(name: str) -> MethodPlan:
    """The plan of method ``name`` (a ``KeyError`` naming the methods for an unknown one)."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; methods are {', '.join(METHOD_NAMES)}")
    return METHODS[name]


def method_help() -> str:
    """``method.name``'s help text: each method with its summary."""
    return "aggregation method: " + ", ".join(f"{n} ({p.summary})" for n, p in METHODS.items())


def aggregator_options(aggregator: str, values: Mapping[str, object]) -> dict[str, object]:
    """The options of ``aggregator`` read from ``values`` (the ``method`` config as a mapping), by its
    declaration: only the options it takes and that the configuration exposes."""
    declared = AGGREGATORS[aggregator].options
    return {name: values[key] for name, key in declared.items() if key is not None and key in values}


def check_aggregator_options(aggregator: str, options: Mapping[str, object]) -> None:
    """A ``ValueError`` naming the options ``aggregator`` does not take."""
    unknown = sorted(set(options) - set(AGGREGATORS[aggregator].options))
    if unknown:
        takes = ", ".join(AGGREGATORS[aggregator].options) or "no options"
        raise ValueError(f"aggregator {aggregator!r} does not take {', '.join(unknown)}; it takes {takes}")


def or_list(names: tuple[str, ...] | list[str]) -> str:
    """``a, b or c``."""
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
