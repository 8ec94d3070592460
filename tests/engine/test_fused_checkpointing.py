"""The fused capture follows activation checkpointing (issue 14): what it needs from the forward (a
Linear's input, a norm's input) is an autograd saved tensor, so inside a checkpointed layer nothing holds
it once the forward is over (it is recomputed in the backward), while without checkpointing it is kept;
the gradients are the plain path's either way (tests/engine/test_accumulate.py)."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import lora_model, make_batch, tiny_model

from raco.gradients.capture import FusedCapture
from raco.losses import response_logps


def holders(storage: torch.UntypedStorage) -> int:
    """How many tensors use ``storage`` (the tensor itself while anything keeps it alive, views,
    detached aliases such as a closure's ``x.detach()``): its use count above that of a storage
    nothing but its Python handle holds."""
    alone = torch.empty(1).untyped_storage()
    count = torch._C._storage_Use_Count
    return count(storage._cdata) - count(alone._cdata)


def inputs_after_forward(model: torch.nn.Module, modules: dict[str, torch.nn.Module]) -> dict[str, int]:
    """Run the fused capture's recorded forward; after it, count who else holds each module's input."""
    seen: dict[str, torch.UntypedStorage] = {}  # the storage only: holding the tensor would count

    def keep(name: str):
        def hook(_module, args, _output) -> None:
            seen.setdefault(name, args[0].untyped_storage())

        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in modules.items()]
    capture = FusedCapture(model, model.get_output_embeddings(), model.get_input_embeddings())
    batch = make_batch(4, 2, seed=8)
    try:
        with capture.recording(n_rows=batch["input_ids"].shape[0]):
            logps, _ = response_logps(model, batch, on_head_rows=capture.set_head_rows)
            counts = {name: holders(x) for name, x in seen.items()}
            capture.set_row_weights(torch.ones(2, logps.shape[0]))
            logps.sum().backward()
        assert capture.collect(), "no gradient was formed"
    finally:
        for h in handles:
            h.remove()
    return counts


@pytest.mark.parametrize("lora", [False, True])
def test_checkpointed_layers_keep_no_capture_inputs(lora):
    def layer_modules(model):
        layer = model.get_base_model().model.layers[0] if lora else model.model.layers[0]
        modules = {"v_proj": layer.self_attn.v_proj.base_layer if lora else layer.self_attn.v_proj}
        if not lora:  # full fine-tuning: the norm's weight is trained (a generic module)
            modules["post_attention_layernorm"] = layer.post_attention_layernorm
        return modules

    make = (lambda: lora_model("llama")) if lora else (lambda: tiny_model("llama"))
    plain = make().train()
    kept = inputs_after_forward(plain, layer_modules(plain))
    assert all(n >= 1 for n in kept.values()), kept  # the capture (autograd) holds them: needed

    checkpointed = make()
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed.train()
    dropped = inputs_after_forward(checkpointed, layer_modules(checkpointed))
    assert dropped == dict.fromkeys(dropped, 0), dropped  # recomputed in the backward instead
