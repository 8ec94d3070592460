"""Tiny random models and hand-built pair batches in the data module's batch contract."""

from __future__ import annotations

import torch
from torch import Tensor, nn

VOCAB = 128


def tiny_model(arch: str = "llama", seed: int = 0, tie: bool = False) -> nn.Module:
    """A 2-layer causal LM with hidden 32 (Llama-, Qwen2- or GPT-2-style), float32, no dropout."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "qwen":
        model = Qwen2ForCausalLM(Qwen2Config(**common))  # q/k/v projections carry biases
    else:  # gpt2: Conv1D projections, learned position embeddings broadcast over the batch
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64)
        config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0
        return GPT2LMHeadModel(config).float()
    # random norm weights so their gradients are non-trivial
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.float()


def lora_model(arch: str = "llama", seed: int = 0) -> nn.Module:
    """LoRA r=4 on attention and MLP projections, with non-zero B so every LoRA factor has a gradient."""
    from peft import LoraConfig, get_peft_model

    base = tiny_model(arch, seed)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model


def make_batch(
    n_pairs: int, k: int, seed: int = 0, max_len: int = 12, ties: bool = True
) -> dict[str, Tensor]:
    """Rows 0..B−1 = prompt + y¹, rows B..2B−1 = prompt + y² (same prompt), right padding, random signs."""
    g = torch.Generator().manual_seed(seed)
    rows: list[tuple[list[int], int]] = []
    prompts = [
        torch.randint(1, VOCAB, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g)
        for _ in range(n_pairs)
    ]
    for side in range(2):
        for b in range(n_pairs):
            n_resp = int(torch.randint(1, max_len - 5, (1,), generator=g))
            resp = torch.randint(1, VOCAB, (n_resp,), generator=g)
            rows.append((prompts[b].tolist() + resp.tolist(), len(prompts[b])))
        del side
    width = max(len(r) for r, _ in rows)
    input_ids = torch.zeros(2 * n_pairs, width, dtype=torch.long)
    attention = torch.zeros(2 * n_pairs, width, dtype=torch.long)
    response = torch.zeros(2 * n_pairs, width, dtype=torch.bool)
    for r, (ids, n_prompt) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention[r, : len(ids)] = 1
        response[r, n_prompt : len(ids)] = True
    choices = torch.tensor([1.0, -1.0, 0.0]) if ties else torch.tensor([1.0, -1.0])
    signs = choices[torch.randint(0, len(choices), (n_pairs, k), generator=g)]
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "response_mask": response,
        "signs": signs,
        "row_index": torch.arange(n_pairs),
    }


def split_batch(batch: dict[str, Tensor], size: int) -> list[dict[str, Tensor]]:
    """Micro-batches of ``size`` pairs (keeping the y¹ / y² row halves aligned)."""
    n = batch["signs"].shape[0]
    out = []
    for start in range(0, n, size):
        idx = list(range(start, start + size))
        rows = idx + [n + i for i in idx]
        mb = {key: batch[key][rows] for key in ("input_ids", "attention_mask", "response_mask")}
        mb["signs"] = batch["signs"][idx]
        mb["row_index"] = batch["row_index"][idx]
        out.append(mb)
    return out


def checkpointed(model: nn.Module) -> nn.Module:
    """``model`` with non-reentrant gradient checkpointing on, in training mode."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train()


def ref_logps(rows: int, seed: int = 5) -> Tensor:
    """Fixed reference log-probs for ``rows`` rows (around −20, like real responses')."""
    return torch.randn(rows, generator=torch.Generator().manual_seed(seed)) - 20


def per_objective_grads(model, batch, specs, ref, logps) -> dict[str, Tensor]:
    """The independent reference: ``{name: [k, *shape]}`` from one ``autograd.grad`` per objective, no
    hooks, on the log-probs ``logps(model, batch)`` → (logps, lengths) gives."""
    from raco.losses.pairwise import PairLogps, objective_losses

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    row_logps, lengths = logps(model, batch)
    counts = torch.full((len(specs),), float(batch["signs"].shape[0]))
    losses = objective_losses(PairLogps.from_rows(row_logps, lengths, ref), batch["signs"], specs, counts)
    per_objective = [
        torch.autograd.grad(losses[i], list(params.values()), retain_graph=True, allow_unused=True)
        for i in range(len(specs))
    ]
    return {
        name: torch.stack([g[j] if g[j] is not None else torch.zeros_like(p) for g in per_objective])
        for j, (name, p) in enumerate(params.items())
    }


def assert_same_grads(got: dict[str, Tensor], want: dict[str, Tensor], floor: float = 1e-6) -> None:
    """Same parameters, same shapes, every entry within 2e-5 of its parameter's largest |entry| (at least
    ``floor``): float32 rounding of two orders of summation (tests/engine/test_fused.py's tolerance)."""
    assert set(got) == set(want)
    for name, g in want.items():
        assert got[name].shape == g.shape, name
        scale = g.abs().max().clamp(min=floor)
        torch.testing.assert_close(got[name] / scale, g / scale, rtol=0, atol=2e-5, msg=name)


def raco_step(model, batches, specs, weights, *, store, path, **engine_options):
    """One RACO step (c = 0.4, solving per micro-batch) over ``batches`` with fixed random reference
    log-probs: ``(report, {name: .grad}, engine)``."""
    from raco.gradients import GradientEngine

    engine = GradientEngine(
        model,
        specs,
        weights,
        method="raco",
        method_options={"c": 0.4},
        path=path,
        solve_per="microbatch",
        store=store,
        verify_fused=False,
        **engine_options,
    )
    counts = engine.step_counts(batches)
    g = torch.Generator().manual_seed(11)
    for mb in batches:
        rows = mb["signs"].shape[0] * 2
        engine.accumulate(mb, counts=counts, ref_logps=torch.randn(rows, generator=g) - 20)
    report = engine.finish_step()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return report, grads, engine
