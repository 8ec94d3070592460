"""Peak memory per token of one training step (issue 14): weighted-sum DPO (the engine's scalarized
path), RACO plain (k backward passes) and RACO fused (one backward, per-objective products in hooks),
k = 2 and 4, with and without gradient checkpointing, at 512/1024/2048 tokens per row; the log-prob
phase alone (``response_logps`` forward + backward) with a 128k vocabulary, today's path (``[N, V]``
logits) against chunked log-probs (``chunk_tokens``, raco/losses/chunked.py); and weighted sum vs fused
k = 2 at a 128k vocabulary with the engine's log-probs today's and chunked.

``engine_chunking`` sets the engines built inside it to the log-prob chunk C (``GradientEngine(
logprob_chunk=C)``, what ``model.logprob_chunk`` sets). The engine table runs with chunked log-probs
(C = 256), so that it measures what the decoder's activations and the fused capture cost
rather than the logits (which the 128k tables measure).

Model: a random Llama shaped like Llama-3 in its ratios (hidden 256, 4 layers, MLP 3.5 × hidden,
4 query heads sharing 1 key/value head), float32, full fine-tuning, untied head. Batch: one pair,
two rows of T tokens each (the first half a shared prompt, the second half the response, no padding),
so a step sees 2T tokens and N = T response positions. Reference log-probs are given to the engine
(no reference forward inside the measured step); the optimizer step is not measured.

Peak memory (CPU): the process RSS high-water mark above the RSS before the step — the kernel's own
mark (VmHWM, reset per measured block: ``PeakRSS`` of step_cost.py), so a busy machine does not hide
short peaks; the script re-executes itself with ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors go
back to the OS and RSS follows live memory. Columns: "peak", the whole step's
(forward, backward(s), Gram, aggregation, ``.grad`` written); "act", the peak of ``accumulate`` (forward
+ backward(s)) less the gradients it forms — k × the trainable parameters for plain and fused (the
per-objective gradients any k-gradient method holds), 1 × for the weighted sum's ``.grad`` — i.e.
activation memory; "finish", what ``finish_step`` adds above that (Gram matrix, direction). Per-token
figures: the least-squares slope of "act" over the lengths (``slopes``); per layer: the difference to a
run with half the layers at the longest length (``per_layer``), from which Llama-3-8B is projected
(``project_llama3``). Times: variants round-robin, best of ``--repeats`` (default 1: one step each, no
warm-up, so times carry first-call noise; memory does not).

    .venv/bin/python benchmarks/memory.py --json /tmp/memory.json     # default run
    .venv/bin/python benchmarks/memory.py --quick                     # tiny, for tests
    .venv/bin/python benchmarks/memory.py --variants fused_k8,gram_k8 --json /tmp/memory-k8.json
                                        # the engine and depth tables only, weighted sum and these
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_cost.py, also when loaded by a test

from raco.gradients import GradientEngine
from raco.losses import ObjectiveSpec, response_logps
from step_cost import PeakRSS

LLAMA3_8B = {"hidden": 4096, "layers": 32, "vocab": 128256, "tokens": 2048}
VARIANTS = (  # name, engine path ("gram": fused with store "gram"), k
    ("weighted_sum", "scalarized", 2),
    ("plain", "plain", 2),
    ("fused", "fused", 2),
    ("plain", "plain", 4),
    ("fused", "fused", 4),
    ("gram", "gram", 4),
)
# also measurable with --variants (k = 8: issue 14's "k = 2..8"; not in the default run, which they
# would lengthen by about half)
EXTRA_VARIANTS = (("plain", "plain", 8), ("fused", "fused", 8), ("gram", "gram", 8))


def variant_name(name: str, k: int) -> str:
    return name if name == "weighted_sum" else f"{name}_k{k}"


def pick_variants(names: str) -> tuple:
    """``--variants fused_k8,gram_k8``: those variants after weighted_sum (every ratio's base)."""
    known = {variant_name(v[0], v[2]): v for v in VARIANTS + EXTRA_VARIANTS}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(
            f"memory.py: --variants: unknown {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return (VARIANTS[0], *(known[n] for n in dict.fromkeys(wanted) if n != "weighted_sum"))


def llama(vocab: int, hidden: int, layers: int) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 7 // 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=4096,
    )
    return LlamaForCausalLM(config).float().train()


def pair_batch(tokens: int, vocab: int, k: int, seed: int = 0) -> dict:
    """One pair: two rows of ``tokens`` tokens, a shared prompt of tokens/2, responses after it."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, tokens), generator=g)
    ids[1, : tokens // 2] = ids[0, : tokens // 2]
    response = (torch.arange(tokens) >= tokens // 2).expand(2, tokens).clone()
    signs = torch.tensor([[1.0 if i % 2 == 0 else -1.0 for i in range(k)]])  # objectives alternate
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "response_mask": response,
        "signs": signs,
    }


@contextlib.contextmanager
def engine_chunking(chunk_tokens: int | None) -> Iterator[None]:
    """Engines built inside the block compute log-probs ``chunk_tokens`` at a time (None: at once)."""
    global ENGINE_CHUNK
    saved, ENGINE_CHUNK = ENGINE_CHUNK, chunk_tokens
    try:
        yield
    finally:
        ENGINE_CHUNK = saved


ENGINE_CHUNK: int | None = None


def measure(step: Callable[[], object], repeats: int) -> tuple[float, int]:
    """Best time and highest RSS delta of ``repeats`` calls."""
    best, peak = float("inf"), 0
    for _ in range(repeats):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - t0)
        peak = max(peak, mem.delta)
    return best, peak


def engine_variant(model: nn.Module, path: str, k: int, batch: dict) -> tuple[Callable[[], None], dict]:
    """One engine step (accumulate + finish_step) and what it records: ``accumulate`` (peak RSS delta
    of the forward + backward(s), the per-objective gradients formed) and ``gradients`` (their bytes:
    k × trainable parameters, or 1 × for the weighted sum's ``.grad`` and ``store="gram"``'s direction).
    ``path="gram"``: the fused path keeping no per-objective gradients (solved per micro-batch)."""
    gram = path == "gram"
    specs = [ObjectiveSpec(f"o{i}", beta=0.1) for i in range(k)]
    method, options = ("weighted_sum", None) if path == "scalarized" else ("raco", {"c": 0.4})
    engine = GradientEngine(
        model,
        specs,
        [1.0 / k] * k,
        method=method,
        method_options=options,
        path="fused" if gram else path,
        verify_fused=False,
        logprob_chunk=ENGINE_CHUNK,
        store="gram" if gram else "gradients",
        solve_per="microbatch" if gram else "step",
    )
    ref = torch.zeros(2)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    record = {
        "accumulate": 0,
        "gradients": 4 * n_params * (1 if path in ("scalarized", "gram") else k),
        "engine": engine,
    }

    def step() -> None:
        with PeakRSS() as acc:
            engine.accumulate(batch, counts=engine.step_counts([batch]), ref_logps=ref)
        record["accumulate"] = max(record["accumulate"], acc.delta)
        engine.finish_step()
        for p in model.parameters():
            p.grad = None

    return step, record


def set_checkpointing(model: nn.Module, on: bool) -> None:
    if on:  # non-reentrant: the fused capture needs the recorded forward under autograd
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.activation_checkpointing_disable()


def variant_rows(
    model: nn.Module, tokens: int, vocab: int, variants: tuple, repeats: int, label: dict
) -> list[dict]:
    """Measure ``variants`` (name, path, k) round-robin on one batch shape; rows relative to the first."""
    steps = {}
    for name, path, k in variants:
        steps[(name, k)] = engine_variant(model, path, k, pair_batch(tokens, vocab, k))
    results: dict[tuple[str, int], list] = {key: [float("inf"), 0] for key in steps}
    for _ in range(repeats):
        for key, (step, _engine) in steps.items():
            seconds, peak = measure(step, 1)
            results[key] = [min(results[key][0], seconds), max(results[key][1], peak)]
    base_t, base_m = results[(variants[0][0], variants[0][2])]
    base_act = None
    rows = []
    for (name, k), (seconds, peak) in results.items():
        record = steps[(name, k)][1]
        act = record["accumulate"] - record["gradients"]
        base_act = act if base_act is None else base_act
        row = {
            **label,
            "tokens": tokens,
            "variant": variant_name(name, k),
            "bytes_per_token": peak / (2 * tokens),
            "act_bytes_per_token": act / (2 * tokens),
            "gradients_mib": record["gradients"] / 2**20,
            "finish_extra_mib": max(peak - record["accumulate"], 0) / 2**20,
            "seconds": seconds,
            "time_ratio": seconds / base_t,
            "memory_ratio": peak / max(base_m, 1),
            "act_ratio": act / max(base_act, 1),
        }
        rows.append(row)
        print(_engine_line(row), flush=True)
    return rows


def engine_rows(
    model: nn.Module, lengths: list[int], vocab: int, chunk: int, repeats: int, variants: tuple = VARIANTS
) -> list[dict]:
    """One row per (tokens, checkpointing, variant): bytes per token and time ratio to weighted sum.
    Log-probs chunked (C = ``chunk``) so that what is measured is the decoder's activations."""
    rows = []
    with engine_chunking(chunk):
        for tokens in lengths:
            for ckpt in (False, True):
                set_checkpointing(model, ckpt)
                label = {"checkpointing": ckpt, "layers": model.config.num_hidden_layers}
                rows += variant_rows(model, tokens, vocab, variants, repeats, label)
    set_checkpointing(model, False)
    return rows


def depth_rows(
    hidden: int, layers: int, vocab: int, tokens: int, chunk: int, repeats: int, variants: tuple = VARIANTS
) -> list[dict]:
    """The engine table's variants at its longest length with half the layers (``per_layer``)."""
    return engine_rows(llama(vocab, hidden, layers // 2), [tokens], vocab, chunk, repeats, variants)


def big_vocab_rows(hidden: int, layers: int, vocab: int, tokens: int, chunk: int, repeats: int) -> list[dict]:
    """Weighted sum and fused k = 2 with checkpointing at a 128k vocabulary, the engine's log-probs
    today's and chunked (patched in with ``engine_chunking``): what wiring ``chunk_tokens`` gives."""
    model = llama(vocab, hidden, layers)
    set_checkpointing(model, True)
    rows = []
    for chunk_tokens in (None, chunk):
        with engine_chunking(chunk_tokens):
            label = {"checkpointing": True, "layers": layers, "vocab": vocab, "chunk": chunk_tokens}
            rows += variant_rows(model, tokens, vocab, (VARIANTS[0], VARIANTS[2]), repeats, label)
    return rows


def _engine_line(row: dict) -> str:
    chunk = "" if "chunk" not in row else f" chunk={row['chunk']}"
    return (
        f"  L={row['layers']} T={row['tokens']:5d} ckpt={'on ' if row['checkpointing'] else 'off'}"
        f" {row['variant']:13s}{chunk:11s}"
        f" peak {row['bytes_per_token'] / 1024:7.1f} KiB/tok x{row['memory_ratio']:5.2f}"
        f"  act {row['act_bytes_per_token'] / 1024:7.1f} KiB/tok x{row['act_ratio']:5.2f}"
        f"  grads {row['gradients_mib']:6.1f} MiB  finish +{row['finish_extra_mib']:6.1f} MiB"
        f"  {row['seconds']:6.2f} s x{row['time_ratio']:5.2f}"
    )


def logprob_rows(
    hidden: int, layers: int, grid: list[tuple[int, int]], chunk: int, repeats: int
) -> list[dict]:
    """Forward + backward of Σ_r log π(r) alone, today's path vs chunked, per (vocabulary, tokens)."""
    rows = []
    for vocab in sorted({v for v, _ in grid}):
        model = llama(vocab, hidden, layers)
        for v, tokens in grid:
            if v != vocab:
                continue
            batch = pair_batch(tokens, vocab, 1)
            result = {}
            for name, chunk_tokens in (("full", None), ("chunked", chunk)):
                result[name] = measure(functools.partial(_logprob_step, model, batch, chunk_tokens), repeats)
            rows.append(_logprob_row(vocab, tokens, chunk, result))
            print(_logprob_line(rows[-1]), flush=True)
        del model
    return rows


def _logprob_step(model: nn.Module, batch: dict, chunk_tokens: int | None) -> None:
    response_logps(model, batch, chunk_tokens=chunk_tokens)[0].sum().backward()
    for p in model.parameters():
        p.grad = None


def _logprob_row(vocab: int, tokens: int, chunk: int, result: dict) -> dict:
    (t_full, m_full), (t_chunk, m_chunk) = result["full"], result["chunked"]
    n = tokens  # response positions: half of each of the two rows
    return {
        "vocab": vocab,
        "tokens": tokens,
        "chunk": chunk,
        "full_bytes_per_token": m_full / (2 * tokens),
        "chunked_bytes_per_token": m_chunk / (2 * tokens),
        "full_logit_copies": m_full / (n * vocab * 4),  # peak in units of one float32 [N, V] tensor
        "chunked_mib": m_chunk / 2**20,
        "memory_ratio": m_chunk / max(m_full, 1),
        "full_seconds": t_full,
        "chunked_seconds": t_chunk,
        "time_ratio": t_chunk / t_full,
    }


def _logprob_line(row: dict) -> str:
    return (
        f"  V={row['vocab']:6d} T={row['tokens']:5d} full {row['full_bytes_per_token'] / 1024:8.1f} KiB/tok"
        f" ({row['full_logit_copies']:.2f} x [N,V] fp32)  chunked(C={row['chunk']}) "
        f"{row['chunked_bytes_per_token'] / 1024:8.1f} KiB/tok ({row['chunked_mib']:.0f} MiB) "
        f"x{row['memory_ratio']:.3f}  time {row['full_seconds']:.2f} s vs {row['chunked_seconds']:.2f} s"
        f" x{row['time_ratio']:.2f}"
    )


def slopes(engine: list[dict]) -> list[dict]:
    """Per (variant, checkpointing): least-squares fit act = fixed + slope · tokens over the lengths, act
    being the forward + backward phase's peak less the gradients it forms. The slope is the activation
    memory per token; ``fixed`` what does not grow with tokens (a chunk's logits, the head's products)."""
    groups: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for r in engine:
        tokens = 2 * r["tokens"]
        groups.setdefault((r["variant"], r["checkpointing"]), []).append(
            (tokens, r["act_bytes_per_token"] * tokens)
        )
    out: list[dict[str, Any]] = []
    for (variant, ckpt), points in groups.items():
        x = torch.tensor([p[0] for p in points], dtype=torch.float64)
        y = torch.tensor([p[1] for p in points], dtype=torch.float64)
        slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum().clamp(min=1e-12))
        fixed = float(y.mean() - slope * x.mean())
        out.append(
            {"variant": variant, "checkpointing": ckpt, "bytes_per_token": slope, "fixed_mib": fixed / 2**20}
        )
    for row in out:
        base = next(
            r for r in out if r["variant"] == "weighted_sum" and r["checkpointing"] == row["checkpointing"]
        )
        row["ratio_to_weighted_sum"] = row["bytes_per_token"] / base["bytes_per_token"]
    return out


def logit_copies(logprobs: list[dict], hidden: int) -> tuple[float, float | None]:
    """(c, c'): today's peak holds c float32 ``[N, V]`` tensors beyond the chunked path's, at the largest
    V and T; the chunked peak grows by c' float32 ``[C, V]`` tensors with V (from two vocabularies at the
    same T, else None), after the growth of the embedding's and the untied head's ``.grad`` (2 · V · h
    float32, parameters rather than log-prob memory) is taken off."""
    big = max(logprobs, key=lambda r: (r["vocab"], r["tokens"]))
    n, vocab, chunk = big["tokens"], big["vocab"], big["chunk"]
    extra = (big["full_bytes_per_token"] - big["chunked_bytes_per_token"]) * 2 * n
    same_t = [r for r in logprobs if r["tokens"] == n and r["vocab"] != vocab]
    if not same_t:
        return extra / (n * vocab * 4), None
    small = max(same_t, key=lambda r: r["vocab"])
    grow = (big["chunked_bytes_per_token"] - small["chunked_bytes_per_token"]) * 2 * n
    grow -= 2 * (vocab - small["vocab"]) * hidden * 4
    return extra / (n * vocab * 4), grow / (chunk * (vocab - small["vocab"]) * 4)


def per_layer(engine: list[dict], depth: list[dict]) -> list[dict]:
    """Per (variant, checkpointing) at the depth table's length: activation bytes per token per layer
    (the difference between the two depths) and the rest (embeddings, head, one layer's recomputation
    under checkpointing): act = rest + layers · per_layer."""
    out = []
    for shallow in depth:
        key = (shallow["variant"], shallow["checkpointing"], shallow["tokens"])
        deep = next(r for r in engine if (r["variant"], r["checkpointing"], r["tokens"]) == key)
        layer = (deep["act_bytes_per_token"] - shallow["act_bytes_per_token"]) / (
            deep["layers"] - shallow["layers"]
        )
        rest = shallow["act_bytes_per_token"] - shallow["layers"] * layer
        out.append({"variant": key[0], "checkpointing": key[1], "per_layer": layer, "rest": rest})
    return out


def project_llama3(engine: list[dict], depth: list[dict], logprobs: list[dict], hidden: int) -> dict:
    """Llama-3-8B (h 4096, 32 layers, V 128256, 2048-token rows) from the measured accounting.

    Activations per token scale with the width at equal ratios (MLP 3.5 h, GQA 4:1): bytes/token(8B) =
    (32 · per_layer + rest) · 4096/h (``per_layer``), a pair of 2048-token rows holding 4096 tokens.
    Log-probs: today's path adds c · 4 · V bytes per response token; chunked, c' · C · V · 4 once."""
    width = LLAMA3_8B["hidden"] / hidden
    out: dict[str, float] = {}
    for r in per_layer(engine, depth):
        key = f"{r['variant']}_{'ckpt' if r['checkpointing'] else 'nockpt'}"
        per_token = (LLAMA3_8B["layers"] * r["per_layer"] + r["rest"]) * width
        out[f"{key}_kb_per_token_per_layer"] = r["per_layer"] * width / 1e3
        out[f"{key}_mb_per_token"] = per_token / 1e6
        out[f"{key}_gb_per_pair"] = per_token * 2 * LLAMA3_8B["tokens"] / 1e9
    c, c_chunk = logit_copies(logprobs, hidden)
    out["logprobs_full_copies"] = c
    out["logprobs_full_mb_per_response_token"] = c * 4 * LLAMA3_8B["vocab"] / 1e6
    out["logprobs_full_gb_per_pair"] = c * 4 * LLAMA3_8B["vocab"] * LLAMA3_8B["tokens"] / 1e9
    if c_chunk is not None:
        chunk = logprobs[0]["chunk"]
        out["logprobs_chunked_copies"] = c_chunk
        out["logprobs_chunked_gb_per_step"] = c_chunk * chunk * LLAMA3_8B["vocab"] * 4 / 1e9
    return out


def print_slopes(rows: list[dict]) -> None:
    for row in rows:
        print(
            f"  slope {row['variant']:13s} ckpt={row['checkpointing']!s:5s}"
            f" {row['bytes_per_token'] / 1024:8.2f} KiB/token x{row['ratio_to_weighted_sum']:.2f}"
            f"  fixed {row['fixed_mib']:7.1f} MiB"
        )


def summarise(path: Path) -> dict:
    """Slopes and the Llama-3-8B projection of a JSON a run wrote (no measuring)."""
    result = json.loads(path.read_text())
    rows = slopes(result["engine"])
    print_slopes(rows)
    projection = project_llama3(result["engine"], result["depth"], result["logprobs"], result["hidden"])
    print(json.dumps(projection, indent=1))
    return {"slopes": rows, "llama3_8b": projection}


@dataclass(frozen=True)
class Setup:
    """Model width/depth, the engine table's vocabulary and lengths, the log-prob table's (V, T) grid,
    the 128k-vocabulary engine check's (V, T), and the chunk size C."""

    hidden: int
    layers: int
    engine_vocab: int
    lengths: list[int]
    logprob_grid: list[tuple[int, int]]
    big_vocab: tuple[int, int]
    chunk: int


SETUPS = {
    "default": Setup(
        256,
        4,
        8192,
        [512, 1024, 2048],
        [(32768, 2048), (131072, 512), (131072, 1024), (131072, 2048)],
        (131072, 512),
        256,
    ),
    "quick": Setup(64, 2, 1024, [64, 128], [(4096, 64), (16384, 128)], (16384, 64), 32),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds) for tests")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-engine", action="store_true", help="only the log-prob table")
    parser.add_argument("--summarise", type=Path, default=None, help="only summarise this run's JSON")
    parser.add_argument(
        "--variants",
        default=None,
        help="engine and depth tables only, with these variants (e.g. fused_k8,gram_k8; weighted_sum "
        "always runs first): skips the 128k-vocabulary, log-prob tables and the projection",
    )
    args = parser.parse_args()
    if args.variants is not None and args.skip_engine:
        raise SystemExit("memory.py: --variants measures the engine table; not with --skip-engine")
    variants = VARIANTS if args.variants is None else pick_variants(args.variants)
    if args.summarise is not None:
        summarise(args.summarise)
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # RSS follows live memory (see step_cost.py)
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    c = SETUPS["quick" if args.quick else "default"]
    hidden, layers, vocab, chunk = c.hidden, c.layers, c.engine_vocab, c.chunk
    t0 = time.perf_counter()
    result: dict[str, object] = {"hidden": hidden, "layers": layers, "engine_vocab": vocab, "chunk": chunk}
    engine: list[dict] = []
    if not args.skip_engine:
        print(
            f"engine step, random Llama h{hidden} L{layers} V{vocab}, 2 rows x T tokens, log-probs C={chunk}"
        )
        engine = engine_rows(llama(vocab, hidden, layers), c.lengths, vocab, chunk, args.repeats, variants)
        print(f"the same at T={c.lengths[-1]} with {layers // 2} layers (activations per layer)")
        depth = depth_rows(hidden, layers, vocab, c.lengths[-1], chunk, args.repeats, variants)
        result["depth"] = depth
    if args.variants is not None:
        result.update(engine=engine, slopes=slopes(engine), per_layer=per_layer(engine, depth))
        print_slopes(result["slopes"])
        for row in result["per_layer"]:
            print(
                f"  per layer {row['variant']:13s} ckpt={row['checkpointing']!s:5s} "
                f"{row['per_layer']:.1f} B/token"
            )
        result["wall_seconds"] = time.perf_counter() - t0
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return
    if not args.skip_engine:
        big_v, big_t = c.big_vocab
        print(f"engine step at V{big_v}, checkpointing, today's vs chunked log-probs in the engine")
        result["big_vocab"] = big_vocab_rows(hidden, layers, big_v, big_t, chunk, args.repeats)
    print(f"log-probs alone (forward + backward), h{hidden} L{layers}, N = T response positions")
    logprobs = logprob_rows(hidden, layers, c.logprob_grid, chunk, args.repeats)
    result.update(engine=engine, logprobs=logprobs)
    if engine:
        rows = slopes(engine)
        print_slopes(rows)
        result["slopes"] = rows
        result["llama3_8b"] = project_llama3(engine, depth, logprobs, hidden)
    result["wall_seconds"] = time.perf_counter() - t0
    tables = ("engine", "logprobs", "big_vocab", "slopes", "depth")
    print(json.dumps({k: v for k, v in result.items() if k not in tables}, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
