"""The fused path's recorded forward and its rows: which batch row (or pair) each module input holds,
and the per-row seeds of the backward through a shared prompt.

``recorded_logps`` runs the policy's forward inside ``FusedCapture.recording`` and tells the capture
the rows of every forward: the LM head's positions (``set_head_rows``), a packed batch's tokens
(``set_token_rows``, data/packing.py), or, with a shared prompt, the pairs of each decoder forward
and head projection (``set_rows``/``set_head_rows``, losses/shared_prefix.py).

Shared prompt (``model.share_prompt``, losses/shared_prefix.py): a prompt activation of pair b serves
both its rows, so its δ is δ¹_b + δ²_b mixed and no per-row weight can be applied after the fact. The
backward is therefore seeded per row, Σ_r s_r log π(r) instead of Σ_r log π(r), and every module weighs
its rows' pairs with p_{i,b} where u_{i,r} = p_{i,b} s_r for both rows r of pair b (``pair_seeds``):
a prompt activation then gets p_{i,b} (s_b δ¹ + s_{B+b} δ²) = u_{i,b} δ¹ + u_{i,B+b} δ², a response
activation p_{i,b} s_r δ^r = u_{i,r} δ^r — objective i's share, exact. It needs u_{·,b} ∥ u_{·,B+b} in
every pair: true for losses of the margin alone (DPO, cDPO, IPO, hinge: s = (1, −1)) and for any mix of
them, and for length-normalised losses among themselves (SimPO, AMoPO: s = (1, −n¹/n²)); a mix of the
two is ``FusedPathUnsupported`` (the plain path shares the prompt). Rows: the prompts' forward leads
with B pairs, the responses' with 2B rows (pair ⌊j/2⌋), the head projects positions of given pairs —
``shared_prefix_logps`` tells ``set_rows`` and ``set_head_rows`` (``recorded_logps``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from raco.data.packing import is_packed
from raco.gradients.capture import FusedCapture, FusedPathUnsupported
from raco.losses.logps import Batch, response_logps
from raco.losses.shared_prefix import shared_prefix_logps


def recorded_logps(
    capture: FusedCapture, model: nn.Module, batch: Batch, chunk_tokens: int | None, share_prompt: bool
) -> tuple[Tensor, Tensor]:
    """The policy's ``(logps [R], lengths [R])`` inside ``capture.recording``, the capture told the rows
    of every forward: ``response_logps`` (the LM head's rows; a packed batch's ``row_ids`` for every
    other module), or with ``share_prompt`` ``shared_prefix_logps`` (every decoder forward's and head
    projection's pairs; weights by pair, ``row_seeds``)."""
    if is_packed(batch):
        if share_prompt:
            raise ValueError("model.share_prompt: not with a packed batch (data.packing)")
        capture.set_token_rows(batch["row_ids"])
    if share_prompt:
        return shared_prefix_logps(
            model,
            batch,
            chunk_tokens=chunk_tokens,
            on_pairs=capture.set_rows,
            on_head_pairs=capture.set_head_rows,
        )
    return response_logps(model, batch, on_head_rows=capture.set_head_rows, chunk_tokens=chunk_tokens)


SEED_RTOL = 1e-6  # how far (relative) a pair's rows' u may be from parallel and still share one forward


def pair_seeds(u: Tensor, names: Sequence[str] | None = None) -> tuple[Tensor, Tensor, str | None]:
    """``(p [k, B], s [2B], problem)`` with u_{i,b} = p_{i,b} s_b and u_{i,B+b} = p_{i,b} s_{B+b} for
    every objective i (``u [k, 2B]``: rows b are y¹, rows B + b y² of pair b), for a backward through a
    shared prompt (module docstring).

    Per pair: i* = the objective with the largest |u| in it and r* the row where that is attained;
    p = u_{·,r*}, s_{r*} = 1, the other row's s = u_{i*,r}/u_{i*,r*} (margin-only losses: (1, −1)
    exactly); a pair whose u is 0 gets p = 0, s = 0. ``problem`` (else None) names the first pair whose
    rows are not parallel, |u_{i,r} − p_{i,b} s_r| > SEED_RTOL · max_r |u_{i,r}| for some i and r
    (e.g. a length-normalised objective beside one of the margin alone, losses/pairwise.py)."""
    pairs = u.shape[1] // 2
    first, second = u.double()[:, :pairs], u.double()[:, pairs:]
    size = torch.maximum(first.abs(), second.abs())  # [k, B]
    star, columns = size.argmax(dim=0), torch.arange(pairs, device=u.device)
    a, b = first[star, columns], second[star, columns]
    on_first = a.abs() >= b.abs()
    pivot = torch.where(on_first, a, b)
    zero = pivot == 0
    pivot = torch.where(zero, torch.ones_like(pivot), pivot)
    p = torch.where(on_first | zero, first, second)
    s1, s2 = torch.where(zero, 0.0, a / pivot), torch.where(zero, 0.0, b / pivot)
    residual = torch.maximum((first - p * s1).abs(), (second - p * s2).abs())
    bad = (residual > SEED_RTOL * size).any(dim=0).nonzero()
    problem = None
    if len(bad):
        pair = int(bad[0])
        ratios = (second[:, pair] / first[:, pair]).tolist()
        named = names if names is not None else [str(i) for i in range(len(ratios))]
        sizes = size[:, pair].tolist()
        shown = ", ".join(f"{n}: {r:.6g}" for n, r, m in zip(named, ratios, sizes, strict=True) if m > 0)
        problem = (
            "model.share_prompt: the objectives weigh the two responses of a pair in different ratios "
            f"(∂L_i/∂log π(y²) ÷ ∂L_i/∂log π(y¹) in pair {pair}: {shown}; e.g. a length-normalised loss "
            "beside one of the margin alone), so one backward through the shared prompt cannot give them "
            "apart; the plain path shares the prompt with any losses"
        )
    return p.to(u.dtype), torch.cat([s1, s2]).to(u.dtype), problem


def row_seeds(
    u: Tensor,
    share_prompt: bool,
    names: Sequence[str] | None = None,
    agree: Callable[[str | None], str | None] = lambda problem: problem,
) -> tuple[Tensor, Tensor]:
    """``(weights, seeds [R])``: the capture's row weights and the backward's seed per row — ``u`` and 1
    without a shared prompt; with one, ``pair_seeds`` (weights ``[k, B]``), raising
    ``FusedPathUnsupported`` with the problem it finds (``agree``: the problem of any process, so that
    all of them leave the fused path together)."""
    if not share_prompt:
        return u, torch.ones(u.shape[1], dtype=u.dtype, device=u.device)
    weights, seeds, problem = pair_seeds(u, names)
    problem = agree(problem)
    if problem is not None:
        raise FusedPathUnsupported(problem)
    return weights, seeds
