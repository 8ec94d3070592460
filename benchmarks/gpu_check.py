"""GPU checks of the gradient engine (run by benchmarks/gpu_check.sh; runs on CPU too, for its test).

For each model (``tiny``: raco's built-in 2-layer random Llama; ``qwen3``: a random model shaped like
Qwen3-0.6B — hidden 1024, 28 layers, 16 heads, 8 KV heads, intermediate 3072, vocab 151936, tied
embeddings — built from its config, no hub access), in raco's mixed precision (float32 master
weights, forward under bfloat16 autocast; ``--dtype float32`` for exact arithmetic):

* fused == plain: the per-objective gradients g_i of the fused one-backward path against k backward
  passes, for each k of ``--ks``; each g_i is read from ``.grad`` after a weighted-sum step with the
  one-hot weight e_i (public API only). Printed: the largest relative error ‖g_fused − g_plain‖/‖g_plain‖
  over objectives; a failure above ``--tolerance`` (default 1e-4 in float32, 5e-2 under bfloat16
  autocast, the engine's own check of the fused path).
* step cost: one AdamW step of weighted-sum DPO (one backward), RACO plain (k backward passes) and RACO
  fused (one backward), best of ``--repeats`` after a warm-up; the ratios to weighted sum, and the peak
  memory (``torch.cuda.max_memory_allocated``; on CPU not measured).
* collectives (only when started by torchrun/accelerate, i.e. ``WORLD_SIZE`` is set): the tensors raco
  sums over processes each step — the loss denominators and a micro-batch's losses and reward sums —
  go through ``torch.distributed.all_reduce`` as they are; NCCL rejects a CPU tensor even with one
  process, so this shows whether they live on the compute device.

``write-qwen3 DIR`` saves the Qwen3-0.6B-shaped random model in bfloat16 with SmolLM2's tokenizer, as
a folder ``raco train --model.name DIR`` loads.

    python benchmarks/gpu_check.py --device cuda --models tiny qwen3 --ks 2 3
    torchrun --standalone --nproc_per_node 1 benchmarks/gpu_check.py --device cuda --models tiny
    python benchmarks/gpu_check.py write-qwen3 /tmp/qwen3-0.6b-random
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec
from raco.training.precision import autocast

sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_cost.py
from step_cost import make_batch

QWEN3_0_6B = dict(
    vocab_size=151936,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
)
SHAPES = {"tiny": (8, 32, 96), "qwen3": (8, 128, 384)}  # pairs, prompt tokens, max response tokens
CHECK_SHAPES = {"tiny": (4, 16, 32), "qwen3": (4, 64, 128)}


def qwen3_model(device: torch.device, layers: int = 28) -> nn.Module:
    """A random Qwen3-0.6B-shaped causal LM, float32 weights, built on ``device``."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    with device:
        return Qwen3ForCausalLM(Qwen3Config(**{**QWEN3_0_6B, "num_hidden_layers": layers}))


def tiny_model(device: torch.device) -> nn.Module:
    from raco.models.loading import tiny_random_model

    return tiny_random_model(0, 49152).to(device)


def _engine(model: nn.Module, k: int, weights: list[float], path: str, method: str) -> GradientEngine:
    specs = [ObjectiveSpec(f"o{i}", beta=0.1) for i in range(k)]
    options = {"c": 0.4} if method == "raco" else {}
    return GradientEngine(
        model, specs, weights, method=method, method_options=options, path=path, verify_fused=False
    )


def per_objective_grads(model: nn.Module, k: int, path: str, batch: dict, ref: torch.Tensor, dtype: str):
    """g_i of every objective as one flat float32 vector each, via one-hot weighted-sum steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = []
    for i in range(k):
        engine = _engine(model, k, [float(j == i) for j in range(k)], path, "weighted_sum")
        model.zero_grad(set_to_none=True)
        with autocast(dtype, batch["input_ids"].device):
            engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
        engine.finish_step()
        grads.append(torch.cat([p.grad.float().flatten() for p in params]))
    model.zero_grad(set_to_none=True)
    return grads


def check_fused(model: nn.Module, name: str, vocab: int, ks: list[int], dtype: str, tol: float) -> dict:
    """Largest relative error of the fused path's g_i against the plain path's, for each k."""
    device = next(model.parameters()).device
    out = {}
    for k in ks:
        batch = make_batch(*CHECK_SHAPES[name], vocab, k, seed=k, device=device)
        ref = torch.randn(batch["input_ids"].shape[0], generator=torch.Generator().manual_seed(k)) - 20
        ref = ref.to(device)
        plain = per_objective_grads(model, k, "plain", batch, ref, dtype)
        fused = per_objective_grads(model, k, "fused", batch, ref, dtype)
        errors = [
            float((f - p).norm() / p.norm().clamp(min=1e-30)) for f, p in zip(fused, plain, strict=True)
        ]
        out[f"{name}_fused_vs_plain_k{k}_max_rel_error"] = max(errors)
        status = "ok" if max(errors) <= tol else f"FAIL (tolerance {tol:g})"
        print(f"  fused == plain, k={k}: max relative error {max(errors):.2e} {status}", flush=True)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_fn(model: nn.Module, k: int, path: str, method: str, dtype: str) -> Callable[[dict], None]:
    engine = _engine(model, k, [1.0 / k] * k, path, method)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-7)
    ref_cache: dict[int, torch.Tensor] = {}

    def step(batch: dict) -> None:
        rows = batch["input_ids"].shape[0]
        ref = ref_cache.setdefault(rows, torch.full((rows,), -20.0, device=batch["input_ids"].device))
        with autocast(dtype, batch["input_ids"].device):
            engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
        engine.finish_step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_cost(
    model: nn.Module, name: str, vocab: int, ks: list[int], dtype: str, repeats: int, shape
) -> dict:
    """Best-of-``repeats`` step time and peak memory of weighted sum, RACO plain and RACO fused."""
    device = next(model.parameters()).device
    out = {}
    for k in ks:
        batch = make_batch(*shape, vocab, k, seed=100 + k, device=device)
        variants = {
            "weighted_sum": step_fn(model, k, "scalarized", "weighted_sum", dtype),
            "raco_plain": step_fn(model, k, "plain", "raco", dtype),
            "raco_fused": step_fn(model, k, "fused", "raco", dtype),
        }
        times: dict[str, float] = {}
        peaks: dict[str, int] = {}
        for variant, step in variants.items():
            step(batch)  # warm-up: kernels, allocator, AdamW state
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            best = float("inf")
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                step(batch)
                _sync(device)
                best = min(best, time.perf_counter() - start)
            times[variant] = best
            peaks[variant] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        for variant in variants:
            ratio = times[variant] / times["weighted_sum"]
            memory = f"peak {peaks[variant] / 2**30:6.2f} GiB" if device.type == "cuda" else "peak n/a (CPU)"
            print(
                f"  k={k} {variant:13s} {times[variant] * 1000:9.1f} ms  x{ratio:5.2f}  {memory}", flush=True
            )
            out[f"{name}_{variant}_k{k}_ratio"] = round(ratio, 3)
            out[f"{name}_{variant}_k{k}_peak_bytes"] = peaks[variant]
    return out


def check_collectives(model: nn.Module, vocab: int, dtype: str) -> dict:
    """All-reduce, as they are, the per-step tensors raco sums over processes (needs a process group)."""
    import torch.distributed as dist

    device = next(model.parameters()).device
    batch = make_batch(*CHECK_SHAPES["tiny"], vocab, 2, seed=7, device=device)
    engine = _engine(model, 2, [0.5, 0.5], "fused", "raco")
    counts = engine.step_counts([batch])
    ref = torch.full((batch["input_ids"].shape[0],), -20.0, device=device)
    with autocast(dtype, device):
        stats = engine.accumulate(batch, counts=counts, ref_logps=ref)
    engine.finish_step()
    model.zero_grad(set_to_none=True)
    out = {}
    for label, tensor in (
        ("loss denominators", counts),
        ("losses", stats.losses),
        ("reward sums", stats.reward_sums),
    ):
        try:
            dist.all_reduce(tensor.clone())
            result = f"ok ({tensor.device})"
        except (RuntimeError, ValueError) as err:
            result = f"FAIL on {tensor.device}: {' '.join(str(err).split())[:160]}"
        out[f"collective_{label.replace(' ', '_')}"] = result
        print(f"  all_reduce of the step's {label} [{dist.get_backend()}]: {result}", flush=True)
    return out


def write_qwen3(folder: Path, layers: int) -> None:
    """The random Qwen3-0.6B-shaped model (bfloat16) and SmolLM2's tokenizer, as one HF folder."""
    from raco.models.offline import smollm2_tokenizer

    model = qwen3_model(torch.device("cpu"), layers).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    smollm2_tokenizer().save_pretrained(folder)
    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**30
    print(f"wrote {folder}: Qwen3-0.6B shape, {layers} layers, random bfloat16 weights ({size:.2f} GiB)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["write-qwen3"]:
        writer = argparse.ArgumentParser(prog="gpu_check.py write-qwen3")
        writer.add_argument("folder", type=Path)
        writer.add_argument("--layers", type=int, default=28)
        args = writer.parse_args(argv[1:])
        write_qwen3(args.folder, args.layers)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", choices=("tiny", "qwen3"), default=["tiny", "qwen3"])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--tolerance", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qwen3-layers", type=int, default=28)
    parser.add_argument("--shape", type=int, nargs=3, metavar=("PAIRS", "PROMPT", "RESPONSE"))
    parser.add_argument("--skip-cost", action="store_true", help="only the correctness checks")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    tol = args.tolerance if args.tolerance is not None else (1e-4 if args.dtype == "float32" else 5e-2)
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results: dict[str, object] = {"device": name, "dtype": args.dtype, "torch": torch.__version__}
    failed = False
    for model_name in args.models:
        vocab = 49152 if model_name == "tiny" else QWEN3_0_6B["vocab_size"]
        model = tiny_model(device) if model_name == "tiny" else qwen3_model(device, args.qwen3_layers)
        model.train()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"{model_name}: {params:.1f}M parameters, {args.dtype} compute, float32 weights [{name}]",
            flush=True,
        )
        checked = check_fused(model, model_name, vocab, args.ks, args.dtype, tol)
        failed |= any(v > tol for v in checked.values())
        results.update(checked)
        if distributed:
            collectives = check_collectives(model, vocab, args.dtype)
            failed |= any(str(v).startswith("FAIL") for v in collectives.values())
            results.update({f"{model_name}_{k}": v for k, v in collectives.items()})
        if not args.skip_cost:
            shape = tuple(args.shape) if args.shape else SHAPES[model_name]
            print(f"  step cost, {shape[0]} pairs x ({shape[1]} + <={shape[2]} tokens):", flush=True)
            results.update(step_cost(model, model_name, vocab, args.ks, args.dtype, args.repeats, shape))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if device.type == "cuda":  # the largest peak of any check (step_cost resets the counter per variant)
        peaks = [v for k, v in results.items() if k.endswith("_peak_bytes") and isinstance(v, int)]
        peak = max([torch.cuda.max_memory_allocated(device), *peaks])
        results["max_memory_allocated_bytes"] = peak
        print(f"torch.cuda.max_memory_allocated (largest peak): {peak / 2**30:.2f} GiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if distributed:
        torch.distributed.destroy_process_group()
    print("gpu_check.py: FAILED" if failed else "gpu_check.py: all checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
