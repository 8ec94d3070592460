"""The torch-free name registries (raco.registry) and the heavy registries hold the same names, and
every choice list, help text and method expansion is derived from them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from raco import config, registry
from raco.aggregators import AGGREGATORS
from raco.data.adapters import ADAPTER_OPTIONS, ADAPTERS
from raco.losses import LOSSES, REFERENCE_FREE
from raco.models.loading import DTYPES


def test_heavy_registries_hold_exactly_the_light_names():
    assert tuple(AGGREGATORS) == registry.AGGREGATOR_NAMES
    assert tuple(LOSSES) == registry.LOSS_NAMES
    assert tuple(ADAPTERS) == registry.ADAPTER_NAMES
    assert tuple(DTYPES) == registry.DTYPE_NAMES
    assert REFERENCE_FREE == registry.REFERENCE_FREE_LOSSES <= set(LOSSES)
    assert set(ADAPTER_OPTIONS) <= set(ADAPTERS)


def test_every_method_expands_to_a_known_aggregator_and_loss():
    for name, plan in registry.METHODS.items():
        assert plan.aggregator in AGGREGATORS, name
        assert plan.loss is None or plan.loss in LOSSES, name
    assert set(registry.AGGREGATOR_NAMES) <= set(registry.METHOD_NAMES)
    amopo = registry.method_plan("amopo")
    assert (amopo.aggregator, amopo.objective_loss("dpo"), amopo.scalarizable) == (
        "weighted_sum",
        "amopo",
        True,
    )
    assert not amopo.needs_reference(["dpo", "ipo"])
    assert registry.method_plan("raco").needs_reference(["simpo", "dpo"])
    assert not registry.method_plan("raco").needs_reference(["simpo"])
    with pytest.raises(KeyError, match="unknown method"):
        registry.method_plan("nope")


@pytest.mark.parametrize("name", registry.AGGREGATOR_NAMES)
def test_declared_options_are_the_functions_keyword_options(name):
    import inspect

    params = list(inspect.signature(AGGREGATORS[name]).parameters)[2:]
    assert set(registry.AGGREGATORS[name].options) == set(params)
    fields = {f.name for f in dataclasses.fields(config.MethodConfig)}
    assert {k for k in registry.AGGREGATORS[name].options.values() if k is not None} <= fields


def test_config_choices_and_help_come_from_the_registries():
    method = {f.name: f for f in dataclasses.fields(config.MethodConfig)}
    assert method["name"].metadata["choices"] == registry.METHOD_NAMES
    assert all(n in method["name"].metadata["help"] for n in registry.METHOD_NAMES)
    objective = {f.name: f for f in dataclasses.fields(config.ObjectiveConfig)}
    assert objective["loss"].metadata["choices"] == registry.LOSS_NAMES
    model = {f.name: f for f in dataclasses.fields(config.ModelConfig)}
    assert model["dtype"].metadata["choices"] == registry.DTYPE_NAMES
    data = {f.name: f for f in dataclasses.fields(config.DataConfig)}
    assert all(n in data["adapter"].metadata["help"] for n in registry.ADAPTER_NAMES)
    assert not hasattr(config, "LOSSES") and not hasattr(config, "DTYPES") and not hasattr(config, "METHODS")


@pytest.mark.parametrize("name", registry.METHOD_NAMES)
def test_method_options_follow_the_declaration(name):
    cfg = config.RunConfig()
    cfg.method.name, cfg.method.c = name, 0.25
    aggregator = config.method_plan(cfg).aggregator
    expected = {"c": 0.25} if "c" in registry.AGGREGATORS[aggregator].options else {}
    assert config.method_options(cfg) == expected


def test_scalarized_path_is_decided_by_the_plan():
    base = {"data": {"train": "x.jsonl"}, "method": {"path": "scalarized"}}
    for name in registry.METHOD_NAMES:
        tree = {**base, "method": {**base["method"], "name": name}}
        if registry.method_plan(name).scalarizable:
            config.validate(config.from_dict(tree))
        else:
            with pytest.raises(config.ConfigError, match="scalarized"):
                config.validate(config.from_dict(tree))


def test_engine_takes_aggregators_not_methods():
    from raco.gradients import resolve_aggregator

    assert resolve_aggregator("weighted_sum") is AGGREGATORS["weighted_sum"]
    with pytest.raises(ValueError, match="unknown aggregator"):
        resolve_aggregator("amopo")
    with pytest.raises(ValueError, match="does not take"):
        registry.check_aggregator_options("mgda", {"c": 0.4})


def test_registry_and_config_are_torch_free():
    code = "import sys, raco.registry, raco.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
