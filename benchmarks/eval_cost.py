"""What `raco eval` costs on CPU: SmolLM2-135M-Instruct generation throughput at batch 1 and batch 16,
and the wall time of a whole evaluation of 64 held-out prompts (issue 10).

    .venv/bin/python benchmarks/eval_cost.py [--threads N] [--prompts 64] [--new-tokens 32]

Prints generated tokens per second at each batch size (measured side by side in one process, same
prompts, greedy decoding) and their ratio, then the wall time of `evaluate_target` on the bundled
SmolLM2 with a length and a MiniLM relevance objective over ``--prompts`` prompts (model loading,
scorer loading, generation and scoring included, split into phases). Record the results in
benchmarks/RESULTS.md with the machine's load (`uptime`) and the thread count: on a busy 2-core
machine two torch threads contend with the other jobs (SmolLM2 measured 5-8x slower than with one).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from raco.eval.config import load_eval_config
from raco.eval.generate import GenerationConfig, generate
from raco.eval.runner import evaluate_target
from raco.models.loading import smollm2_model_dir
from raco.models.offline import smollm2_tokenizer

TOPICS = (
    "bread", "the sea", "a violin", "rain", "chess", "volcanoes", "tea", "bicycles",
    "the moon", "gardening", "honey bees", "glass", "maps", "winter", "trains", "paper",
)  # fmt: skip
FORMS = (
    "Explain {} to a child.",
    "Give two tips about {}.",
    "Describe {} in one sentence.",
    "Why does {} matter?",
)


def prompts(n: int) -> list[str]:
    """``n`` short, varied prompts (deterministic)."""
    return [FORMS[i % len(FORMS)].format(TOPICS[i % len(TOPICS)]) for i in range(n)]


def throughput(model, tokenizer, texts: list[str], batch_size: int, new_tokens: int) -> tuple[float, int]:
    """(tokens generated per second, tokens generated) for ``texts`` at ``batch_size``, greedy."""
    config = GenerationConfig(max_new_tokens=new_tokens, batch_size=batch_size, chat_template=True)
    started = time.perf_counter()
    responses = generate(model, tokenizer, texts, config, progress=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)
    return tokens / seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--throughput-prompts", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {load:.2f}")

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_model_dir()), dtype=torch.float32).eval()
    tokenizer = smollm2_tokenizer()
    texts = prompts(args.throughput_prompts)
    throughput(model, tokenizer, texts[:2], 2, 4)  # warm-up
    rates = {}
    for batch_size in (1, 16):
        rate, tokens = throughput(model, tokenizer, texts, batch_size, args.new_tokens)
        rates[batch_size] = rate
        print(f"generation, batch {batch_size:>2}: {rate:7.1f} tokens/s ({tokens} tokens)")
    print(f"batch 16 / batch 1 throughput: {rates[16] / rates[1]:.2f}x")

    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "prompts.jsonl"
        file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts(args.prompts)))
        overrides = {
            "prompts.path": str(file),
            "prompts.max_prompts": str(args.prompts),
            "generation.max_new_tokens": str(args.new_tokens),
            "generation.batch_size": "16",
            "generation.chat_template": "true",
            "objectives.concise.scorer": "length:unit=words",
            "objectives.concise.direction": "lower",
            "objectives.relevant.scorer": "relevance",
        }
        started = time.perf_counter()
        cfg = load_eval_config(None, overrides)
        evaluate_target("smollm2-135m-instruct", cfg, Path(folder) / "out", progress=False)
        seconds = time.perf_counter() - started
        print(f"raco eval, {args.prompts} prompts ({args.new_tokens} new tokens, 2 scorers): {seconds:.1f} s")


if __name__ == "__main__":
    main()
