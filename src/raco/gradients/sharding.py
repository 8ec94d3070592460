"""FSDP2 sharding of a policy for raco: every decoder layer one unit, the causal LM the root unit.

``fully_shard`` is applied to every module whose class is one of the model's ``_no_split_modules``
(transformers' decoder layers, what accelerate's ``TRANSFORMER_BASED_WRAP`` picks), then to the
``*ForCausalLM`` itself — inside a peft wrapper, not the wrapper: raco calls the causal LM's forward
(losses/logps.py), so the root unit's hooks (which gather the embeddings, final norm and LM head) run.
LoRA works as is: FSDP2 shards frozen and trainable parameters alike and forms gradients only for the
trainable ones. The optimizer must be built on the parameters *after* sharding (DTensors).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from raco.losses.logps import unwrap_causal_lm


def decoder_layers(causal_lm: nn.Module) -> list[nn.Module]:
    """The modules of the classes the model declares unsplittable (its decoder layers)."""
    names = set(getattr(causal_lm, "_no_split_modules", None) or ())
    layers = [m for m in causal_lm.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(
            f"{type(causal_lm).__name__} declares no decoder-layer classes (_no_split_modules): raco "
            "cannot choose its FSDP2 units"
        )
    return layers


def shard_model(model: nn.Module, *, reshard_after_forward: bool = True, **fsdp: Any) -> nn.Module:
    """Shard ``model`` in place with FSDP2 (see module docstring); ``fsdp``: more ``fully_shard``
    options (``mesh``, ``mp_policy``, ...). Returns ``model``."""
    causal_lm = unwrap_causal_lm(model)
    if isinstance(causal_lm, FSDPModule):
        return model
    for layer in decoder_layers(causal_lm):
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **fsdp)
    fully_shard(causal_lm, reshard_after_forward=reshard_after_forward, **fsdp)
    return model


@contextmanager
def gathered(model: nn.Module, keep: bool = True) -> Iterator[nn.Module]:
    """Within the block every FSDP2-sharded parameter of ``model`` is replaced by its whole tensor, on
    the host, where ``keep`` (the process that saves), so that ``state_dict`` and ``save_pretrained``
    see whole weights; the sharded parameters are put back after it. Each parameter is gathered in turn
    (``full_tensor``, a collective: call on every process, ``keep`` or not) and moved off the device at
    once, so no process holds more than one whole parameter on its device, and the processes that do
    not keep hold nothing whole. No-op when unsharded."""
    swapped: list[tuple[nn.Module, str, Tensor]] = []
    full: dict[int, nn.Parameter] = {}  # tied weights stay tied
    for module in model.modules():  # the same order on every process
        for name, p in list(module._parameters.items()):
            if isinstance(p, DTensor):
                if id(p) not in full:
                    whole = p.full_tensor().cpu() if keep else p.full_tensor()[:0]  # the others drop it
                    full[id(p)] = nn.Parameter(whole, requires_grad=p.requires_grad)
                if keep:
                    module._parameters[name] = full[id(p)]
                    swapped.append((module, name, p))
    try:
        yield model
    finally:
        for module, name, p in swapped:
            module._parameters[name] = p
