"""Held-out evaluation: per-objective loss, preference accuracy and margin over every evaluation row.

Over the n_i rows with s_i ≠ 0, with r the implicit reward (β·(π − ρ), or β·π/n for reference-free
losses) and Δ = s_i·(r¹ − r²) the preferred response's lead:
accuracy_i = (#{Δ > 0} + ½·#{Δ = 0}) / n_i — a tie counts half, so the starting model (π = π_ref, all
rewards 0) scores 0.5 —, margin_i = mean Δ, loss_i = mean per-pair loss. The weighted accuracy is
Σ_i w_i · accuracy_i.

Under several processes the batches are shared out (batch b to process b mod W, each batch exactly as
one process makes it) and every process's per-batch statistics are all-gathered back into batch order
and summed there: every process holds the 1-process values exactly (the same additions in the same
order), and the main process logs them. The processes run the same number of forward passes (a
discarded repeat where a share is one batch short), as a sharded model (FSDP2) needs; a
DistributedDataParallel wrapper is looked through (its forward would broadcast buffers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from raco.losses import ObjectiveSpec, PairLogps, implicit_rewards, objective_losses, response_logps
from raco.metric_keys import eval_key, objective_key
from raco.models.reference import Reference
from raco.shard import gather_strided, local_module, rank_and_world, rounds

Batch = dict[str, Tensor]
STATS = ("loss", "correct", "margin", "pairs")  # per objective, summed over batches


def batch_statistics(
    model: nn.Module,
    batch: Batch,
    objectives: Sequence[ObjectiveSpec],
    reference: Reference,
    chunk_tokens: int | None = None,
) -> Tensor:
    """``[len(STATS), k]`` float64 sums over ``batch``'s rows with s_i ≠ 0: per-pair loss, correct
    (Δ > 0, ties ½), margin Δ, and the number of such rows (on the model's device)."""
    k = len(objectives)
    logps, lengths = response_logps(model, batch, chunk_tokens=chunk_tokens)
    ref = reference.logps(batch)
    pair = PairLogps.from_rows(logps.float(), lengths, ref.float() if ref is not None else None)
    signs = batch["signs"].to(logps.device)
    ones = torch.ones(k, dtype=torch.float64, device=logps.device)
    out = torch.zeros(len(STATS), k, dtype=torch.float64, device=logps.device)
    out[0] = objective_losses(pair, signs, list(objectives), ones).double()
    for i, spec in enumerate(objectives):
        r1, r2 = implicit_rewards(pair, spec)
        s = signs[:, i]
        keep = s != 0
        lead = (spec.beta * s * (r1 - r2))[keep].double()
        out[1, i] = ((lead > 0).double() + 0.5 * (lead == 0).double()).sum()
        out[2, i] = lead.sum()
        out[3, i] = keep.sum()
    return out


@torch.no_grad()
def evaluation_totals(
    model: nn.Module,
    batches: Iterable[Batch],
    objectives: Sequence[ObjectiveSpec],
    reference: Reference,
    *,
    prepare: Callable[[Batch], Batch] | None = None,
    device: torch.device | None = None,
    chunk_tokens: int | None = None,
) -> Tensor:
    """``[len(STATS), k]`` sums of :func:`batch_statistics` over every batch, this process computing
    its strided share (``prepare``, e.g. a move to the device, is applied to those batches only) and
    every process getting the totals of all (gathered on ``device``, the model's)."""
    rank, world = rank_and_world()
    prepare = prepare or (lambda batch: batch)
    mine: list[Tensor] = []
    first, seen = None, 0
    model = local_module(model)
    was_training = model.training
    model.eval()
    try:
        for b, batch in enumerate(batches):
            first, seen = (batch if b == 0 else first), seen + 1
            if b % world == rank:
                mine.append(
                    batch_statistics(model, prepare(batch), objectives, reference, chunk_tokens).flatten()
                )
        if world > 1 and first is not None and len(mine) < rounds(seen, world):
            batch_statistics(model, prepare(first), objectives, reference, chunk_tokens)  # others' last
    finally:
        model.train(was_training)
    width = len(STATS) * len(objectives)
    local = torch.stack(mine) if mine else torch.zeros(0, width, dtype=torch.float64)
    return gather_strided(local, device).sum(dim=0).cpu().reshape(len(STATS), len(objectives))


def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    objectives: Sequence[ObjectiveSpec],
    weights: Sequence[float] | None,
    reference: Reference,
    *,
    prepare: Callable[[Batch], Batch] | None = None,
    device: torch.device | None = None,
    chunk_tokens: int | None = None,
) -> dict[str, float]:
    """``eval/<objective>/loss``, ``eval/<objective>/rewards/accuracies`` and ``eval/weighted_accuracy``
    (Σ w_i acc_i), or ``eval/mean_accuracy`` (the plain mean) when ``weights`` is None — for a method
    the weights do not steer (mgda), whose score should not look weighted. Call on every process
    (see the module docstring; ``prepare`` and ``device`` as in :func:`evaluation_totals`)."""
    k = len(objectives)
    loss_sum, correct, margin_sum, counted = evaluation_totals(
        model, batches, objectives, reference, prepare=prepare, device=device, chunk_tokens=chunk_tokens
    )
    metrics: dict[str, float] = {}
    weighted = 0.0
    used = [1.0 / k] * k if weights is None else [float(w) for w in weights]
    for i, spec in enumerate(objectives):
        n = max(float(counted[i]), 1.0)
        accuracy = float(correct[i]) / n
        metrics[eval_key(objective_key(spec.name, "loss"))] = float(loss_sum[i]) / n
        metrics[eval_key(objective_key(spec.name, "rewards/accuracies"))] = accuracy
        metrics[eval_key(objective_key(spec.name, "rewards/margins"))] = float(margin_sum[i]) / n
        metrics[eval_key(objective_key(spec.name, "pairs"))] = float(counted[i])
        weighted += used[i] * accuracy
    metrics[eval_key("mean_accuracy" if weights is None else "weighted_accuracy")] = weighted
    return metrics
