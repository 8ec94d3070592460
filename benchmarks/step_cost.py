"""Cost of one full optimizer step: weighted-sum DPO (one backward) vs RACO plain (k backward passes)
vs RACO fused (one backward, per-objective products at each layer), for k = 1, 2, 4, 8; and TRL's
DPOTrainer step for k = 1. Same model, batch and seed for every variant; variants run round-robin and
each reports its best of ``--repeats`` timed steps (after one warm-up), so load from other processes
on the machine penalises no variant in particular.

Models: a random Llama (hidden 256, 4 layers, vocab 2048; full fine-tuning) and SmolLM2-135M-Instruct
with LoRA r=8 on q/v; on a GPU also (``--model qwen3``) a random model shaped like Qwen3-0.6B (hidden
1024, 28 layers, 16/8 heads, vocab 151936), full fine-tuning in bfloat16. On CPU, peak memory is the
process RSS high-water mark during the step above the RSS before it (the kernel's VmHWM, reset per
step; CPU has no allocator statistics; the script re-executes itself with
``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensor memory goes back to the OS and RSS tracks live memory);
on CUDA it is the allocator's peak.

    python benchmarks/step_cost.py --json benchmarks/step_cost.json                  # CPU: full + lora
    python benchmarks/step_cost.py --device cuda --dtype bfloat16 --model qwen3 lora --json gpu.json

Distributed mode (``--distributed``): the full-fine-tuning Llama's RACO fused step (global batch of
8 pairs split over the processes) under ``torchrun`` with 1 and 2 processes (``--worlds``), replicated
(per-objective gradients all-reduced in buckets) vs FSDP2 (sharded parameters and per-objective
gradient shards, reduce-scattered): per-rank step time, peak memory above the pre-step level, peak
bytes of per-objective gradients held (the engine's own count) and bytes each rank passed to
collectives per step (raco's all-reduces / reduce-scatters and FSDP2's parameter all-gathers).

    python benchmarks/step_cost.py --distributed --ks 2 3 --json step_cost_distributed.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch
import torch.distributed as dist
from torch import nn

from raco.gradients import GradientEngine, collectives
from raco.gradients.sharding import shard_model
from raco.losses import ObjectiveSpec
from raco.models.reference import AdapterReference, FrozenReference

PAGE = os.sysconf("SC_PAGE_SIZE")
DEVICE = torch.device("cpu")
DTYPE = torch.float32


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _high_water() -> int | None:
    """The kernel's RSS high-water mark (VmHWM) in bytes; None where /proc does not report it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_high_water() -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0); False where
    that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Highest RSS above the starting RSS while the block runs; on CUDA the allocator's peak above the
    memory allocated at the start.

    On Linux the kernel's own high-water mark is used (VmHWM, reset at the start of the block through
    /proc/self/clear_refs): exact, whatever the load — a sampler can miss a short peak when the machine
    is busy. Blocks may nest: an inner block's reset first folds the mark reached so far into every
    enclosing block's peak. Elsewhere, RSS is sampled every 2 ms in a background thread."""

    _open: ClassVar[list[PeakRSS]] = []  # the blocks running now, outermost first

    def __enter__(self) -> PeakRSS:
        if DEVICE.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.start = self.peak = torch.cuda.memory_allocated()
            return self
        self.start = self.peak = rss()
        mark = _high_water()
        for outer in PeakRSS._open:
            outer.peak = max(outer.peak, mark or 0)
        self._exact = mark is not None and _reset_high_water()
        if not self._exact:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        PeakRSS._open.append(self)
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        if DEVICE.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated()
            return
        PeakRSS._open.remove(self)
        if self._exact:
            self.peak = max(self.peak, _high_water() or 0)
        else:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def delta(self) -> int:
        return self.peak - self.start


def make_batch(
    n_pairs: int,
    prompt: int,
    response: int,
    vocab: int,
    k: int,
    seed: int,
    device: torch.device | None = None,
) -> dict:
    """Right-padded pair batch in raco's contract; responses of varying length (response/2..response),
    on ``device`` (default: the benchmark's DEVICE)."""
    g = torch.Generator().manual_seed(seed)
    width = prompt + response
    ids = torch.randint(3, vocab, (2 * n_pairs, width), generator=g)
    ids[n_pairs:, :prompt] = ids[:n_pairs, :prompt]
    lengths = torch.randint(response // 2, response + 1, (2 * n_pairs,), generator=g)
    pos = torch.arange(width)
    attention = pos < (prompt + lengths[:, None])
    response_mask = attention & (pos >= prompt)
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0])[torch.randint(0, 5, (n_pairs, k), generator=g)]
    signs[0] = 1.0  # every objective has at least one non-tie row
    batch = {
        "input_ids": ids * attention,
        "attention_mask": attention.long(),
        "response_mask": response_mask,
        "signs": signs,
        "row_index": torch.arange(n_pairs),
    }
    return {key: value.to(device or DEVICE) for key, value in batch.items()}


def engine_step(model: nn.Module, reference: nn.Module | None, k: int, path: str, method: str) -> Callable:
    specs = [ObjectiveSpec(f"o{i}", beta=0.1) for i in range(k)]
    options = {"c": 0.4} if method == "raco" else {}
    engine = GradientEngine(
        model,
        specs,
        torch.full((k,), 1.0 / k),
        method=method,
        method_options=options,
        path=path,
        reference=FrozenReference(reference) if reference is not None else AdapterReference(model),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def step(batch: dict) -> None:
        engine.accumulate(batch, counts=engine.step_counts([batch]))
        engine.finish_step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step.engine = engine  # type: ignore[attr-defined]  # the distributed mode reads its store size
    return step


def _count_all_gathers() -> None:
    """Count FSDP2's parameter all-gathers in ``collectives.TRAFFIC`` (raco counts its own calls)."""
    from torch.distributed import distributed_c10d

    original = distributed_c10d.all_gather_single

    def counted(output_tensor, input_tensor, *args, **kwargs):
        collectives.TRAFFIC["fsdp2_all_gather"] += input_tensor.numel() * input_tensor.element_size()
        return original(output_tensor, input_tensor, *args, **kwargs)

    distributed_c10d.all_gather_single = counted
    dist.all_gather_single = counted


def distributed_worker(layout: str, k: int, repeats: int) -> None:
    """One rank of ``--distributed``: prints ``RESULT {json}`` on rank 0 (times: slowest rank)."""
    global DEVICE
    dist.init_process_group("nccl" if DEVICE.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if DEVICE.type == "cuda":
        DEVICE = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(DEVICE)
    _count_all_gathers()
    model, reference, _, vocab = full_model()
    if layout == "fsdp2":
        shard_model(model)
    step = engine_step(model, reference, k, "fused", "raco")
    pairs, prompt, response = MODELS["full"][1]
    batch = make_batch(pairs, prompt, response, vocab=vocab, k=k, seed=k)
    share = pairs // world
    rows = list(range(rank * share, (rank + 1) * share))
    rows += [pairs + r for r in rows]
    local = {
        key: value[rows] if key not in ("signs", "row_index") else value[rows[:share]]
        for key, value in batch.items()
    }
    step(local)  # warm-up
    collectives.TRAFFIC.clear()
    best = float("inf")
    with PeakRSS() as peak:
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            step(local)
            sync()
            best = min(best, time.perf_counter() - start)
    slowest = torch.tensor([best], device=DEVICE)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    result = {
        "world": world,
        "layout": layout,
        "k": k,
        "step_seconds": round(float(slowest), 4),
        "peak_memory_bytes": peak.delta,
        "store_bytes": step.engine.peak_store_bytes,  # type: ignore[attr-defined]
        "bytes_per_step": {name: n // repeats for name, n in sorted(collectives.TRAFFIC.items())},
    }
    if rank == 0:
        print("RESULT " + json.dumps(result), flush=True)
    dist.destroy_process_group()


def run_distributed(ks: list[int], worlds: list[int], repeats: int) -> list[dict]:
    """Launch the worker under torchrun for every (world, layout, k); the rank-0 results."""
    torchrun = Path(sys.executable).with_name("torchrun")
    results = []
    for k in ks:
        for world in worlds:
            for layout in ("replicated", "fsdp2"):
                command = [str(torchrun), "--standalone", "--nproc_per_node", str(world), __file__]
                command += ["--dist-worker", layout, "--ks", str(k), "--repeats", str(repeats)]
                command += ["--device", DEVICE.type]
                proc = subprocess.run(command, capture_output=True, text=True, check=False)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(proc.stderr[-3000:])
                row = json.loads(lines[0].removeprefix("RESULT "))
                results.append(row)
                traffic = sum(row["bytes_per_step"].values())
                print(
                    f"  k={k} W={world} {layout:10s} {row['step_seconds'] * 1000:7.0f} ms  peak "
                    f"+{row['peak_memory_bytes'] / 2**20:6.1f} MiB  store {row['store_bytes'] / 2**20:6.2f} "
                    f"MiB  sent {traffic / 2**20:7.2f} MiB/step {row['bytes_per_step']}",
                    flush=True,
                )
    return results


def trl_step(model: nn.Module, reference: nn.Module | None, tokenizer, out_dir: str) -> Callable:
    """TRL DPOTrainer's own loss (fused LM head, in-step reference pass) + backward + AdamW step."""
    import trl
    from datasets import Dataset

    args = trl.DPOConfig(
        output_dir=out_dir,
        beta=0.1,
        report_to=[],
        use_cpu=DEVICE.type == "cpu",
        save_strategy="no",
        bf16=torch.bfloat16 == DTYPE,
        gradient_checkpointing=False,
        precompute_ref_log_probs=False,
    )
    data = Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}] * 2)
    trainer = trl.DPOTrainer(
        model=model, ref_model=reference, args=args, train_dataset=data, processing_class=tokenizer
    )
    optimizer = torch.optim.AdamW([p for p in trainer.model.parameters() if p.requires_grad], lr=1e-6)

    def step(batch: dict) -> None:
        inputs = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "completion_mask": batch["response_mask"].long(),
        }
        trainer._compute_loss(trainer.model, inputs, return_outputs=False).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def run_variants(variants: dict[str, Callable], batches: dict[str, dict], repeats: int) -> dict:
    """Round-robin timing; returns {name: (best seconds, peak RSS delta bytes)}."""
    for name, step in variants.items():
        step(batches[name])  # warm-up (allocations, optimizer state)
    times: dict[str, list[float]] = {n: [] for n in variants}
    peaks: dict[str, int] = dict.fromkeys(variants, 0)
    for _ in range(repeats):
        for name, step in variants.items():
            with PeakRSS() as mem:
                sync()
                t0 = time.perf_counter()
                step(batches[name])
                sync()
                times[name].append(time.perf_counter() - t0)
            peaks[name] = max(peaks[name], mem.delta)
    return {n: (min(times[n]), peaks[n]) for n in variants}


def word_tokenizer(vocab: int):
    """A whitespace word-level tokenizer over ``t0..t{vocab-1}`` (TRL needs one to build its trainer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(vocab)}, unk_token="t1"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t2", unk_token="t1")


def full_model() -> tuple[nn.Module, nn.Module, object, int]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    model = LlamaForCausalLM(config).to(DEVICE, DTYPE)
    reference = copy.deepcopy(model).requires_grad_(False)
    return model, reference, word_tokenizer(2048), 2048


def qwen3_model(layers: int = 28) -> tuple[nn.Module, nn.Module, object, int]:
    """A random model shaped like Qwen3-0.6B (full fine-tuning)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=151936,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    model = Qwen3ForCausalLM(config).to(DEVICE, DTYPE)
    reference = copy.deepcopy(model).requires_grad_(False)
    return model, reference, word_tokenizer(151936), 151936


def lora_model() -> tuple[nn.Module, None, object, int]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from raco.models.loading import smollm2_model_dir

    folder = smollm2_model_dir()
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=DTYPE).to(DEVICE)
    torch.manual_seed(0)
    model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    )
    return model, None, AutoTokenizer.from_pretrained(str(folder)), base.config.vocab_size


def bench_model(
    build: Callable, ks: list[int], shape: tuple[int, int, int], repeats: int, out_dir: str
) -> dict:
    model, reference, tokenizer, vocab = build()
    model.train()
    rows: dict[int, dict] = {}
    for k in ks:
        batch = make_batch(*shape, vocab=vocab, k=k, seed=k)
        variants = {
            "weighted_sum": engine_step(model, reference, k, "scalarized", "weighted_sum"),
            "raco_plain": engine_step(model, reference, k, "plain", "raco"),
            "raco_fused": engine_step(model, reference, k, "fused", "raco"),
        }
        if k == 1:
            trl_ref = copy.deepcopy(reference) if reference is not None else None
            variants["trl_dpo"] = trl_step(copy.deepcopy(model), trl_ref, tokenizer, out_dir)
        rows[k] = run_variants(variants, dict.fromkeys(variants, batch), repeats)
        base_t, base_m = rows[k]["weighted_sum"]
        for name, (t, m) in rows[k].items():
            print(
                f"  k={k} {name:13s} {t * 1000:8.0f} ms  x{t / base_t:5.2f}   peak +{m / 2**20:7.1f} MiB"
                f"  x{m / max(base_m, 1):5.2f}",
                flush=True,
            )
    return rows


def ratio(rows: dict, k: int, name: str, base: str = "weighted_sum", index: int = 0) -> float:
    return round(rows[k][name][index] / max(rows[k][base][index], 1e-12), 3)


def summarise(prefix: str, rows: dict, ks: list[int]) -> dict[str, float]:
    """Ratios to the weighted-sum step for one model, keyed ``<prefix>_<variant>_k<k>_ratio``."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"{prefix}_fused_k{k}_ratio"] = ratio(rows, k, "raco_fused")
        out[f"{prefix}_plain_k{k}_ratio"] = ratio(rows, k, "raco_plain")
        out[f"{prefix}_fused_k{k}_peak_memory_ratio"] = ratio(rows, k, "raco_fused", index=1)
    if 1 in ks:  # "ours" at k = 1 is what path="auto" runs there: the plain path (one backward, no hooks)
        out[f"{prefix}_ours_vs_trl_k1_ratio"] = ratio(rows, 1, "raco_plain", "trl_dpo")
    return out


MODELS = {  # title, default batch shape (pairs, prompt tokens, max response tokens)
    "full": ("random Llama h256 L4 V2048, full fine-tuning", (8, 32, 96)),
    "lora": ("SmolLM2-135M-Instruct, LoRA r=8 on q/v", (2, 24, 48)),
    "qwen3": ("random Qwen3-0.6B shape, full fine-tuning", (8, 128, 384)),
}


def main() -> None:
    global DEVICE, DTYPE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="write the ratios to this JSON file")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", nargs="+", choices=sorted(MODELS), default=["full", "lora"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--qwen3-layers", type=int, default=28, help="fewer layers for a quick check")
    parser.add_argument(
        "--shape", type=int, nargs=3, metavar=("PAIRS", "PROMPT", "RESPONSE"), help="override batch shapes"
    )
    parser.add_argument("--distributed", action="store_true", help="1 vs N processes, FSDP2 vs replicated")
    parser.add_argument(
        "--worlds", type=int, nargs="+", default=[1, 2], help="process counts (--distributed)"
    )
    parser.add_argument("--dist-worker", choices=("replicated", "fsdp2"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    DEVICE, DTYPE = torch.device(args.device), getattr(torch, args.dtype)
    if DEVICE.type == "cpu" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # RSS follows live memory
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.dist_worker:
        distributed_worker(args.dist_worker, args.ks[0], args.repeats)
        return
    if args.distributed:
        rows = run_distributed(args.ks, args.worlds, args.repeats)
        if args.json is not None:
            args.json.write_text(json.dumps({"device": DEVICE.type, "runs": rows}, indent=1) + "\n")
        return
    torch.manual_seed(0)
    builders = {"full": full_model, "lora": lora_model, "qwen3": lambda: qwen3_model(args.qwen3_layers)}
    name = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "CPU"
    result: dict[str, object] = {"device": name, "dtype": args.dtype}
    for model in args.model:
        title, shape = MODELS[model]
        shape = tuple(args.shape) if args.shape else shape
        pairs, prompt, response = shape
        batch = f"{pairs} pairs x ({prompt} prompt + <={response} response tokens)"
        print(f"{title}, {batch} [{name}, {args.dtype}]")
        rows = bench_model(builders[model], args.ks, shape, args.repeats, "/tmp/raco-step-cost")
        result.update(summarise(model, rows, args.ks))
    if "lora" in args.model and 1 in args.ks:  # the key names
        result["ours_vs_trl_k1_ratio"] = result["lora_ours_vs_trl_k1_ratio"]
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
