"""Prompt sharing (issue 14): tokens computed per pair with and without a shared prefix, and the
measured time of both on the built-in tiny model.

Today a pair batch holds prompt + y¹ and prompt + y² as two rows (data/collate.py), so a pair costs
2P + |y¹| + |y²| token positions through the decoder; with ``model.share_prompt``
(raco/losses/shared_prefix.py) the prompt runs once and both responses continue from its key/value
cache: P + |y¹| + |y²|. The saving is the prompt's share of a row, P / (2P + |y¹| + |y²|) of the tokens.
Two length profiles: Reddit-summary-like (TL;DR: a ~400-token post, ~40-token summaries: the prompt is
~90% of a row) and PKU-SafeRLHF-like (a ~30-token question, ~150-token answers).

Timing (CPU): ``tiny-random`` (2 layers, hidden 64, SmolLM2's 49152-token vocabulary, float32),
``--pairs`` pairs of random tokens with each profile's lengths (responses of unequal lengths, y² 10%
longer, rows right-padded as the collator does); "forward" = the reference's no-grad log-probs
(``response_logps`` vs ``shared_prefix_logps``), "fwd+bwd" = the policy's log-probs and the backward
of their sum; both paths alternate, best of ``--repeats``. The LM head (49152 × 64 per response
position) costs the same on both paths, so a model this small shows less than the token ratio; the
decoder's share of the cost (and so the gain) grows with the model: ``--hidden/--layers/--vocab`` time a
random Llama of another shape (MLP 2 × hidden, 4 query / 2 key-value heads, tied head) instead.

    .venv/bin/python benchmarks/prompt_sharing.py               # the table in RESULTS.md
    .venv/bin/python benchmarks/prompt_sharing.py --hidden 256 --layers 8 --vocab 8192   # decoder-heavier
    .venv/bin/python benchmarks/prompt_sharing.py --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from raco.data.collate import PairCollator
from raco.losses.logps import response_logps
from raco.losses.shared_prefix import shared_prefix_logps
from raco.models.loading import tiny_random_model

VOCAB = 49152


@dataclass(frozen=True)
class Profile:
    """Token lengths of one pair: prompt P, responses y¹ and y²."""

    name: str
    prompt: int
    response_1: int
    response_2: int


PROFILES = (
    Profile("reddit-summary-like", 400, 38, 42),
    Profile("pku-saferlhf-like", 30, 143, 157),
)


def tokens_per_pair(p: Profile) -> tuple[int, int]:
    """``(without, with)`` sharing: 2P + |y¹| + |y²| and P + |y¹| + |y²| (real tokens, no padding)."""
    responses = p.response_1 + p.response_2
    return 2 * p.prompt + responses, p.prompt + responses


def saved_fraction(p: Profile) -> float:
    """The share of a pair's tokens that sharing does not compute: P / (2P + |y¹| + |y²|)."""
    without, shared = tokens_per_pair(p)
    return (without - shared) / without


def make_model(hidden: int, layers: int, vocab: int) -> torch.nn.Module:
    """``tiny-random`` itself at its shape (h 64, 2 layers, V 49152), else a random Llama of that shape
    with tiny-random's proportions (MLP 2 × hidden, 4 query heads sharing 2 key/value heads)."""
    if (hidden, layers, vocab) == (64, 2, VOCAB):
        return tiny_random_model(0, VOCAB)
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def pair_batch(p: Profile, pairs: int, seed: int = 0, vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    """``pairs`` random pairs with the profile's lengths, collated as training collates them."""
    g = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(1, vocab, (n,), generator=g).tolist()

    items = [
        {
            "row_index": i,
            "prompt_ids": ids(p.prompt),
            "response_1_ids": ids(p.response_1),
            "response_2_ids": ids(p.response_2),
            "signs": [1.0],
        }
        for i in range(pairs)
    ]
    return PairCollator(pad_token_id=0)(items)  # type: ignore[arg-type]


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(p: Profile, model: torch.nn.Module, pairs: int, repeats: int) -> dict[str, float]:
    """Best seconds of the forward (no grad) and of forward + backward, today's path (``full``) and
    shared, alternating after one warm-up each."""
    batch = pair_batch(p, pairs, vocab=model.config.vocab_size)
    paths = {"full": response_logps, "shared": shared_prefix_logps}

    def forward(path: str) -> None:
        with torch.no_grad():
            paths[path](model, batch)

    def forward_backward(path: str) -> None:
        model.zero_grad(set_to_none=True)
        paths[path](model, batch)[0].sum().backward()

    for path in paths:
        forward_backward(path)
    times: dict[str, float] = {}
    for _ in range(repeats):
        for path in paths:
            for name, fn in (("fwd", forward), ("fwdbwd", forward_backward)):
                key = f"{name}_{path}"
                times[key] = min(times.get(key, float("inf")), seconds(functools.partial(fn, path)))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64, help="default: tiny-random's shape")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=VOCAB)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = make_model(args.hidden, args.layers, args.vocab)
    name = "tiny-random" if (args.hidden, args.layers, args.vocab) == (64, 2, VOCAB) else "random Llama"
    print(f"{name} (h{args.hidden}, {args.layers} layers, V {args.vocab}), float32, CPU, ", end="")
    print(f"{args.threads} thread(s), ", end="")
    print(f"{args.pairs} pairs per batch")
    print(f"times per batch, best of {args.repeats}; tokens per pair (real tokens, no padding)\n")
    header = (
        "| profile | P | y¹ | y² | tokens without | tokens with | ratio | saved | forward full | "
        "forward shared | fwd+bwd full | fwd+bwd shared |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for p in PROFILES:
        without, shared = tokens_per_pair(p)
        t = measure(p, model, args.pairs, args.repeats)
        print(
            f"| {p.name} | {p.prompt} | {p.response_1} | {p.response_2} | {without} | {shared} | "
            f"{without / shared:.2f}× | {saved_fraction(p):.1%} | {t['fwd_full'] * 1e3:.1f} ms | "
            f"{t['fwd_shared'] * 1e3:.1f} ms | {t['fwdbwd_full'] * 1e3:.1f} ms | "
            f"{t['fwdbwd_shared'] * 1e3:.1f} ms |"
        )


if __name__ == "__main__":
    main()
