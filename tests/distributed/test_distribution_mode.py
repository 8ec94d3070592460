"""The accelerate config is honoured or refused at start: DDP and FSDP2 run; DeepSpeed, FSDP1,
Megatron-LM, XLA, FSDP CPU offload, FSDP's own activation checkpointing and accelerate's mixed
precision are ConfigErrors naming the setting and what to use instead."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType

from raco.config import ConfigError
from raco.training.distribution import distribution_mode


def accelerator(kind=DistributedType.NO, processes=1, mixed_precision="no"):
    return SimpleNamespace(
        distributed_type=kind,
        num_processes=processes,
        mixed_precision=mixed_precision,
        state=SimpleNamespace(fsdp_plugin=None),
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_MEGATRON_LM"):
        monkeypatch.delenv(name, raising=False)
    for name in ("FSDP_VERSION", "FSDP_OFFLOAD_PARAMS", "FSDP_ACTIVATION_CHECKPOINTING"):
        monkeypatch.delenv(name, raising=False)


def fsdp(monkeypatch, **env):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_supported_modes(monkeypatch):
    assert distribution_mode(accelerator()) == "single"
    assert distribution_mode(accelerator(DistributedType.MULTI_GPU, 8)) == "replicated"
    assert distribution_mode(accelerator(DistributedType.MULTI_CPU, 2)) == "replicated"
    fsdp(monkeypatch, FSDP_VERSION="2")  # read from the environment even where accelerate ignores it
    assert distribution_mode(accelerator(DistributedType.MULTI_CPU, 2)) == "fsdp2"


@pytest.mark.parametrize(
    ("kind", "env", "mixed", "match"),
    [
        (DistributedType.DEEPSPEED, {}, "no", "DEEPSPEED.*FSDP2"),
        (DistributedType.MULTI_GPU, {"ACCELERATE_USE_DEEPSPEED": "true"}, "no", "DEEPSPEED"),
        (DistributedType.MEGATRON_LM, {}, "no", "MEGATRON_LM"),
        (DistributedType.XLA, {}, "no", "XLA"),
        (DistributedType.MULTI_GPU, {}, "bf16", "mixed_precision: bf16.*model.dtype"),
    ],
)
def test_refused(monkeypatch, kind, env, mixed, match):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=match):
        distribution_mode(accelerator(kind, 2, mixed))


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"FSDP_VERSION": "1"}, "fsdp_version: 1.*fsdp_version: 2"),
        ({"FSDP_VERSION": "2", "FSDP_OFFLOAD_PARAMS": "true"}, "fsdp_offload_params"),
        ({"FSDP_VERSION": "2", "FSDP_ACTIVATION_CHECKPOINTING": "true"}, "model.gradient_checkpointing"),
    ],
)
def test_fsdp_settings_refused(monkeypatch, env, match):
    fsdp(monkeypatch, **env)
    with pytest.raises(ConfigError, match=match):
        distribution_mode(accelerator(DistributedType.MULTI_CPU, 2))
