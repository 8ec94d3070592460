"""How a run is distributed: the user's accelerate config, read at start and honoured, or refused.

Modes (docs/distributed.md):

* ``single``: one process; the model is moved to the device.
* ``replicated``: several processes (accelerate's MULTI_GPU / MULTI_CPU / ...): the model goes through
  ``accelerator.prepare_model`` (DistributedDataParallel); the engine runs the wrapped module (DDP's
  own hooks never fire: no parameter accumulates a gradient) and all-reduces per-objective gradients
  itself, in flat buckets.
* ``fsdp2``: accelerate's ``distributed_type: FSDP`` with ``fsdp_version: 2``: the policy is sharded
  with ``fully_shard`` (gradients/sharding.py: one unit per decoder layer, the causal LM as the root,
  ``fsdp_reshard_after_forward`` honoured), and the engine keeps per-objective gradient shards. raco
  shards the model itself rather than through ``accelerator.prepare``: accelerate makes the outer
  (peft) wrapper the root unit and carves the embeddings and head into units of their own, while raco
  calls the causal LM's forward; and on CPU accelerate ignores an FSDP config altogether (it is
  honoured here all the same, which is how the gloo tests run it). A frozen reference model
  (``model.reference: copy``) is sharded the same way (``distribute_reference``).

Anything else — FSDP1, DeepSpeed, Megatron-LM, XLA, FSDP's CPU offload or activation checkpointing,
accelerate's own mixed precision — is a ``ConfigError`` at start, naming the setting and what to use.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from torch import nn
from torch.distributed.fsdp import CPUOffloadPolicy

from raco.config import ConfigError
from raco.gradients.sharding import shard_model
from raco.models.reference import FrozenReference, Reference

MODES = ("single", "replicated", "fsdp2")
_USE_INSTEAD = (
    "raco supports replicated data parallelism (distributed_type: MULTI_GPU) and FSDP2 "
    "(distributed_type: FSDP with fsdp_config.fsdp_version: 2, e.g. configs/accelerate/fsdp2.yaml)"
)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def fsdp_plugin(accelerator: Accelerator) -> FullyShardedDataParallelPlugin | None:
    """The FSDP settings of the accelerate config (read from the environment ``accelerate launch``
    sets when accelerate itself ignores them, as it does on CPU), or None without FSDP."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is None and _env_flag("ACCELERATE_USE_FSDP"):
        plugin = FullyShardedDataParallelPlugin()
    return plugin


def _refused(setting: str, why: str) -> ConfigError:
    return ConfigError(f"accelerate config: {setting} is not supported ({why}); {_USE_INSTEAD}")


def distribution_mode(accelerator: Accelerator) -> str:
    """``single``, ``replicated`` or ``fsdp2`` (see module docstring); a ``ConfigError`` otherwise."""
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED or _env_flag("ACCELERATE_USE_DEEPSPEED"):
        raise _refused(
            "distributed_type: DEEPSPEED", "ZeRO partitions the gradients raco forms per objective"
        )
    if kind == DistributedType.MEGATRON_LM or _env_flag("ACCELERATE_USE_MEGATRON_LM"):
        raise _refused("distributed_type: MEGATRON_LM", "tensor/pipeline parallel models are not hooked")
    if kind == DistributedType.XLA:
        raise _refused("distributed_type: XLA", "raco's engine targets CUDA and CPU")
    plugin = fsdp_plugin(accelerator)
    if plugin is None:
        if accelerator.mixed_precision != "no":
            raise _precision_error(accelerator.mixed_precision)
        return "single" if accelerator.num_processes == 1 else "replicated"
    if plugin.fsdp_version != 2:
        raise _refused(
            f"FSDP with fsdp_version: {plugin.fsdp_version}",
            "FSDP1 flattens parameters; set fsdp_config.fsdp_version: 2",
        )
    if isinstance(plugin.cpu_offload, CPUOffloadPolicy):
        raise _refused(
            "fsdp_offload_params: true", "per-objective gradient shards live on the compute device"
        )
    if plugin.activation_checkpointing:
        raise _refused(
            "fsdp_activation_checkpointing: true", "use raco's model.gradient_checkpointing: true instead"
        )
    if accelerator.mixed_precision != "no":
        raise _precision_error(accelerator.mixed_precision)
    return "fsdp2"


def _precision_error(mixed_precision: str) -> ConfigError:
    return ConfigError(
        f"accelerate config: mixed_precision: {mixed_precision} is not supported (a second autocast "
        "and precision policy raco does not choose); set mixed_precision: 'no' there and choose "
        "precision with raco's model.dtype (bfloat16: float32 master weights, bfloat16 compute)"
    )


def distribute(accelerator: Accelerator, model: nn.Module, mode: str) -> nn.Module:
    """Place ``model`` for ``mode``: returns the module the run trains (never a DDP wrapper: DDP's
    forward would broadcast buffers and arm hooks the engine does not use; the wrapper stays with
    the accelerator)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    model = model.to(accelerator.device)
    if mode == "replicated":
        return accelerator.unwrap_model(accelerator.prepare_model(model))
    if mode == "fsdp2":
        plugin = fsdp_plugin(accelerator)
        assert plugin is not None
        _one_process_group(accelerator)
        return shard_model(model, reshard_after_forward=bool(plugin.reshard_after_forward))
    return model


def _one_process_group(accelerator: Accelerator) -> None:
    """``fully_shard`` needs a process group; a single process launched without one (``accelerate
    launch --num_processes 1`` with an FSDP2 config) gets a group of one, so that it runs the FSDP2
    code path it asked for."""
    if dist.is_initialized():
        return
    backend = "nccl" if accelerator.device.type == "cuda" else "gloo"
    store = Path(tempfile.mkdtemp(prefix="raco-pg-")) / "store"
    dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)


def distribute_reference(accelerator: Accelerator, reference: Reference, mode: str) -> Reference:
    """Move ``reference`` to the device; under FSDP2 a frozen reference model (``reference: copy``) is
    sharded like the policy, so no rank holds a whole copy on the device (its forwards are then
    collectives, run by every rank for every micro-batch, as the engine does)."""
    reference.to(accelerator.device)
    if mode == "fsdp2" and isinstance(reference, FrozenReference):
        plugin = fsdp_plugin(accelerator)
        assert plugin is not None
        shard_model(reference.model, reshard_after_forward=bool(plugin.reshard_after_forward))
    return reference
