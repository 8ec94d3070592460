"""The fused path covers every trainable parameter or refuses: fused == plain (k separate backward
passes, autograd's own gradients) across model families and peft options, and each guard of the
fused capture fires on the case it exists for — with ``path: auto`` then falling back to exactly the
plain path's numbers."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import make_batch, tiny_model
from model_zoo import FAMILIES, MOE_FAMILIES, family_model, peft_model
from torch import nn

from raco.gradients import FusedPathUnsupported, GradientEngine
from raco.losses import ObjectiveSpec

SPECS = [ObjectiveSpec("a", beta=0.2), ObjectiveSpec("b", loss="ipo", beta=2.0)]


def grads(model, path: str, seed: int = 3, verify: bool = False) -> dict[str, torch.Tensor]:
    """Per-objective gradients ``[2, *shape]`` of one micro-batch, by parameter name."""
    batch = make_batch(4, 2, seed=seed)
    ref = torch.randn(8, generator=torch.Generator().manual_seed(5)) - 20
    engine = GradientEngine(model, SPECS, [0.6, 0.4], method="weighted_sum", path=path, verify_fused=verify)
    torch.manual_seed(seed)  # dropout masks: the same for every path
    engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
    names = {id(p): n for n, p in model.named_parameters()}
    out = {names[key]: g.clone() for key, g in engine._store.items()}
    engine.discard_step()
    return out


def assert_same(fused: dict, plain: dict, model: nn.Module) -> None:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(fused) == set(plain) == trainable, sorted(trainable ^ set(fused))[:5]
    for name, g in plain.items():
        scale = g.abs().max().clamp(min=1e-6)
        torch.testing.assert_close(fused[name] / scale, g / scale, rtol=0, atol=3e-5, msg=name)


DENSE = sorted(set(FAMILIES) - set(MOE_FAMILIES))


@pytest.mark.parametrize("family", DENSE)
def test_full_fine_tuning_fused_equals_plain(family):
    model = family_model(family)
    assert_same(grads(model, "fused"), grads(model, "plain"), model)


def test_tied_head_full_and_lora_on_the_tied_head():
    model = family_model("qwen2", tie=True)
    assert_same(grads(model, "fused"), grads(model, "plain"), model)
    lora = peft_model(family_model("llama", tie=True), target_modules=["q_proj", "lm_head"])
    assert_same(grads(lora, "fused"), grads(lora, "plain"), lora)


PEFT_OPTIONS = {
    "embedding-lora": dict(target_modules=["q_proj", "embed_tokens"]),  # lora_embedding_A/B: ParameterDicts
    "trainable-tokens": dict(target_modules=["q_proj"], trainable_token_indices=list(range(1, 128, 3))),
    "trainable-tokens-tied": dict(target_modules=["q_proj"], trainable_token_indices=list(range(1, 128, 3))),
    "dora": dict(target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True),
    "modules-to-save": dict(target_modules=["q_proj"], modules_to_save=["lm_head", "norm"]),
    "all-linear": dict(target_modules="all-linear"),
}


@pytest.mark.parametrize("option", sorted(PEFT_OPTIONS))
def test_peft_options_fused_equals_plain(option):
    model = peft_model(family_model("llama", tie=option.endswith("tied")), **PEFT_OPTIONS[option])
    fused, plain = grads(model, "fused"), grads(model, "plain")
    assert_same(fused, plain, model)
    assert all(bool(g.abs().sum() > 0) for g in fused.values()), [
        n for n, g in fused.items() if g.abs().sum() == 0
    ]


def test_lora_dropout_fused_equals_plain():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        family_model("llama"), LoraConfig(r=4, lora_dropout=0.3, target_modules=["q_proj"])
    )
    model.train()
    assert_same(grads(model, "fused"), grads(model, "plain"), model)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_moe_is_exact_under_auto(family):
    """Experts see tokens flattened across rows: the fused path refuses, auto is the plain path exactly."""
    plain = grads(family_model(family), "plain")
    with pytest.raises(FusedPathUnsupported):
        grads(family_model(family), "fused")
    with pytest.warns(RuntimeWarning, match="does not support this model"):
        auto = grads(family_model(family), "auto")
    for name, g in plain.items():
        torch.testing.assert_close(auto[name], g, rtol=0, atol=0, msg=name)


class BorrowedHead(nn.Module):
    """An LM head that uses the input embedding's weight functionally (it owns no parameter)."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = [embedding]  # not a submodule: the weight stays the embedding's

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(hidden, self.embedding[0].weight)


class NoisyNorm(nn.Module):
    """A trainable module with randomness inside: its re-run VJP would differentiate other masks."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(32))
        self.inner = inner

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(self.inner(hidden) * self.weight, 0.5, training=True)


class InPlaceMLP(nn.Module):
    """An MLP that scales its down-projection's output in place (the taps' outputs are views)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        mlp = self.inner
        out = mlp.down_proj(mlp.act_fn(mlp.gate_proj(hidden)) * mlp.up_proj(hidden))
        return out.mul_(0.5)


def _in_place_mlp():
    model = tiny_model("llama")
    model.model.layers[0].mlp = InPlaceMLP(model.model.layers[0].mlp)
    return model


def _borrowed_head():
    model = tiny_model("llama")
    model.lm_head = BorrowedHead(model.model.embed_tokens)
    return model


def _noisy_norm():
    model = tiny_model("llama")
    model.model.norm = NoisyNorm(model.model.norm)
    return model


def _reentrant_checkpointing():
    model = tiny_model("llama")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    return model


GUARDS = {
    # what misleads the hooks -> the message the fused path refuses with
    "weight used outside its module": (_borrowed_head, "differ from the plain path"),
    "randomness in a re-run module": (_noisy_norm, "different output when re-run"),
    "a hooked output modified in place": (_in_place_mlp, "modifies a hooked module's output in place"),
}


def test_reentrant_checkpointing_is_refused_not_misread():
    """Its forward runs without autograd, so no hook would see the layers' tensors (the plain path's
    autograd.grad does not support it either; raco enables the non-reentrant variant)."""
    with pytest.raises(FusedPathUnsupported, match="ran without autograd"):
        grads(_reentrant_checkpointing(), "fused", verify=True)


@pytest.mark.parametrize("case", sorted(GUARDS))
def test_guards_refuse_and_auto_is_exactly_plain(case):
    make, message = GUARDS[case]
    with pytest.raises(FusedPathUnsupported, match=message):
        grads(make(), "fused", verify=True)
    plain = grads(make(), "plain")
    with pytest.warns(RuntimeWarning, match=message):
        auto = grads(make(), "auto", verify=True)
    assert set(auto) == set(plain)
    for name, g in plain.items():
        torch.testing.assert_close(auto[name], g, rtol=0, atol=0, msg=name)


def test_verification_passes_silently_and_keeps_the_fused_path(recwarn):
    model = peft_model(family_model("llama"), target_modules=["q_proj", "embed_tokens"])
    engine = GradientEngine(model, SPECS, [0.6, 0.4], method="raco", method_options={"c": 0.4})
    for seed in (1, 2):
        batch = make_batch(4, 2, seed=seed)
        engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=torch.zeros(8) - 20)
        engine.finish_step()
    assert engine.path == "fused" and not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
