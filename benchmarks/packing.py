"""Packing (issue 14, ``data.packing``): tokens a micro-batch computes padded vs packed, on length
profiles with realistic variance, and the measured time of both on the built-in tiny model.

A padded micro-batch of B pairs computes 2B · T token positions, T its longest row (data/collate.py);
packed (data/packing.py) it computes Σ_r |row r|, the real tokens only. The padding share is
1 − packed / padded. It depends on how much row lengths vary inside a micro-batch, so the profiles draw
lengths from log-normal distributions (median m, log-space spread σ, clipped to [lo, hi]):

* Reddit-summary-like (TL;DR): prompt m 400, σ 0.5, [40, 768]; responses m 40, σ 0.45, [5, 160].
* PKU-SafeRLHF-like: question m 30, σ 0.6, [5, 256]; responses m 150, σ 0.6, [10, 512].

(The medians are those of benchmarks/prompt_sharing.py's fixed profiles.) ``--pairs-total`` pairs are
drawn per profile and cut into micro-batches of 2, 4 and 8 pairs in a random order, as training
shuffles; the token columns are sums over all of them (``--pairs-total`` divisible by 8 keeps every pair).

Attention: a causal LM given a packed sequence of N tokens without a mask (transformers' sdpa and
eager) builds a block-diagonal N × N mask and computes attention over all N² query-key pairs, about 2B
times the padded R · T²; only an attention that takes the rows' lengths (flash attention's varlen,
``cu_seqlens``) or skips the masked blocks (flex attention) computes the rows' Σ |row|² alone. The
"attention pairs" column counts the three (per layer and head, summed over the micro-batches).

Timing (CPU): ``tiny-random`` (2 layers, hidden 64, SmolLM2's 49152-token vocabulary, float32, ``--attn``
sdpa by default), the first ``--timed`` micro-batches of each size ("timed: padding" is their padding
share): "forward" = no-grad ``response_logps`` (the reference's work), "fwd+bwd" = the policy's log-probs
and the backward of their sum; padded and packed alternate, best of ``--repeats``, summed over the timed
micro-batches. The LM head projects only response positions on both (the same work), so the gain is the
decoder's: it grows with the model (``--hidden/--layers/--vocab``: a random Llama of that shape, as
benchmarks/prompt_sharing.py).

    .venv/bin/python benchmarks/packing.py                 # the table in RESULTS.md
    .venv/bin/python benchmarks/packing.py --attn flex_attention --sizes 8   # rows' attention alone
    .venv/bin/python benchmarks/packing.py --repeats 1     # quick
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from raco.data.collate import PairCollator
from raco.data.packing import computed_tokens, pack
from raco.losses.logps import response_logps

VOCAB = 49152
SIZES = (2, 4, 8)


@dataclass(frozen=True)
class Length:
    """A log-normal token length: median, log-space spread, clipped to [lo, hi]."""

    median: float
    sigma: float
    lo: int
    hi: int

    def draw(self, n: int, g: torch.Generator) -> list[int]:
        z = torch.randn(n, generator=g, dtype=torch.float64)
        values = (self.median * torch.exp(self.sigma * z)).round().clamp(self.lo, self.hi)
        return [int(v) for v in values]


@dataclass(frozen=True)
class Profile:
    name: str
    prompt: Length
    response: Length


PROFILES = (
    Profile("reddit-summary-like", Length(400, 0.5, 40, 768), Length(40, 0.45, 5, 160)),
    Profile("pku-saferlhf-like", Length(30, 0.6, 5, 256), Length(150, 0.6, 10, 512)),
)


def draw_pairs(p: Profile, n: int, seed: int = 0, vocab: int = VOCAB) -> list[dict]:
    """``n`` tokenised pairs of random tokens with the profile's lengths (each response drawn apart)."""
    g = torch.Generator().manual_seed(seed)
    prompts, first, second = p.prompt.draw(n, g), p.response.draw(n, g), p.response.draw(n, g)

    def ids(k: int) -> list[int]:
        return torch.randint(1, vocab, (k,), generator=g).tolist()

    return [
        {
            "row_index": i,
            "prompt_ids": ids(prompts[i]),
            "response_1_ids": ids(first[i]),
            "response_2_ids": ids(second[i]),
            "signs": [1.0],
        }
        for i in range(n)
    ]


def micro_batches(pairs: list[dict], size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Padded micro-batches of ``size`` pairs in a random order (a short tail is dropped, as training)."""
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    collate = PairCollator(pad_token_id=0)
    return [
        collate([pairs[i] for i in order[start : start + size]])
        for start in range(0, len(pairs) - size + 1, size)
    ]


def token_counts(batches: list[dict[str, torch.Tensor]]) -> tuple[int, int]:
    """``(padded, packed)``: token positions the micro-batches compute padded and packed."""
    return sum(computed_tokens(b) for b in batches), sum(computed_tokens(pack(b)) for b in batches)


def attention_pairs(batches: list[dict[str, torch.Tensor]]) -> tuple[int, int, int]:
    """Query-key pairs per attention layer and head, summed over the micro-batches: padded R · T², packed
    with a dense block-diagonal mask (sdpa, eager) N², packed per row (flash attention's varlen,
    flex attention's skipped blocks, ideally) Σ_r |row r|² (causal attention computes half of each)."""
    padded = dense = per_row = 0
    for b in batches:
        rows, width = b["input_ids"].shape
        lengths = b["attention_mask"].sum(dim=1)
        padded += rows * width**2
        dense += int(lengths.sum()) ** 2
        per_row += int((lengths**2).sum())
    return padded, dense, per_row


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model: torch.nn.Module, batches: list[dict], repeats: int) -> dict[str, float]:
    """Best seconds, summed over ``batches``, of the no-grad forward and of forward + backward, padded
    and packed, alternating after one warm-up each."""
    forms = {"padded": batches, "packed": [pack(b) for b in batches]}

    def forward(form: str) -> None:
        with torch.no_grad():
            for b in forms[form]:
                response_logps(model, b)

    def forward_backward(form: str) -> None:
        for b in forms[form]:
            model.zero_grad(set_to_none=True)
            response_logps(model, b)[0].sum().backward()

    timed: list[tuple[str, Callable[[str], None]]] = [("fwd", forward), ("fwdbwd", forward_backward)]
    try:
        for form in forms:
            forward_backward(form)
    except NotImplementedError:  # flex attention has no backward on the CPU
        timed = timed[:1]
        for form in forms:
            forward(form)
    times = {"fwdbwd_padded": float("nan"), "fwdbwd_packed": float("nan")}
    for _ in range(repeats):
        for form in forms:
            for name, fn in timed:
                key = f"{name}_{form}"
                times[key] = min(times.get(key, float("inf")), seconds(functools.partial(fn, form)))
    return times


def _make_model(hidden: int, layers: int, vocab: int) -> torch.nn.Module:
    """benchmarks/prompt_sharing.py's ``make_model`` (tiny-random at its shape)."""
    spec = importlib.util.spec_from_file_location(
        "prompt_sharing_bench", Path(__file__).with_name("prompt_sharing.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.make_model(hidden, layers, vocab)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs-total", type=int, default=1024, help="pairs drawn per profile")
    parser.add_argument("--timed", type=int, default=2, help="micro-batches timed per size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64, help="default: tiny-random's shape")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--attn", default="sdpa", help="model.attn_implementation to time")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="pairs per micro-batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = _make_model(args.hidden, args.layers, args.vocab)
    model.config._attn_implementation = args.attn
    name = "tiny-random" if (args.hidden, args.layers, args.vocab) == (64, 2, VOCAB) else "random Llama"
    print(
        f"{name} (h{args.hidden}, {args.layers} layers, V {args.vocab}), {args.attn}, float32, CPU, "
        f"{args.threads} thread(s); {args.pairs_total} pairs per profile; times: the first "
        f"{args.timed} micro-batches of each size, best of {args.repeats}\n"
    )
    header = (
        "| profile | pairs/micro-batch | tokens padded | tokens packed | padding share | attention pairs "
        "padded / packed dense / packed per row | timed: padding | forward padded | forward packed | "
        "fwd+bwd padded | fwd+bwd packed |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for p in PROFILES:
        pairs = draw_pairs(p, args.pairs_total, vocab=args.vocab)
        for size in args.sizes:
            batches = micro_batches(pairs, size)
            padded, packed = token_counts(batches)
            attention = " / ".join(f"{n / 1e6:.0f}M" for n in attention_pairs(batches))
            timed_padded, timed_packed = token_counts(batches[: args.timed])
            t = measure(model, batches[: args.timed], args.repeats)
            print(
                f"| {p.name} | {size} | {padded} | {packed} | {1 - packed / padded:.1%} | {attention} | "
                f"{1 - timed_packed / timed_padded:.1%} | "
                f"{t['fwd_padded'] * 1e3:.1f} ms | {t['fwd_packed'] * 1e3:.1f} ms | "
                f"{t['fwdbwd_padded'] * 1e3:.1f} ms | {t['fwdbwd_packed'] * 1e3:.1f} ms |"
            )


if __name__ == "__main__":
    main()
