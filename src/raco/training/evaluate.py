"""Held-out evaluation: per-objective loss, preference accuracy and margin over every evaluation row.

Over the n_i rows with s_i ≠ 0, with r the implicit reward (β·(π − ρ), or β·π/n for reference-free
losses) and Δ = s_i·(r¹ − r²) the preferred response's lead:
accuracy_i = (#{Δ > 0} + ½·#{Δ = 0}) / n_i — a tie counts half, so the starting model (π = π_ref, all
rewards 0) scores 0.5 —, margin_i = mean Δ, loss_i = mean per-pair loss. The weighted accuracy is
Σ_i w_i · accuracy_i.

Under several processes every process evaluates every row (the held-out set is not sharded), so each
holds the values of the whole set — those of a 1-process run — and the main process logs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from raco.losses import ObjectiveSpec, PairLogps, implicit_rewards, objective_losses, response_logps
from raco.metric_keys import eval_key, objective_key
from raco.models.reference import Reference

Batch = dict[str, Tensor]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    objectives: Sequence[ObjectiveSpec],
    weights: Sequence[float] | None,
    reference: Reference,
) -> dict[str, float]:
    """``eval/<objective>/loss``, ``eval/<objective>/rewards/accuracies`` and ``eval/weighted_accuracy``
    (Σ w_i acc_i), or ``eval/mean_accuracy`` (the plain mean) when ``weights`` is None — for a method
    the weights do not steer (mgda), whose score should not look weighted."""
    k = len(objectives)
    loss_sum, margin_sum = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    correct, counted = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            logps, lengths = response_logps(model, batch)
            ref = reference.logps(batch)
            pair = PairLogps.from_rows(logps.float(), lengths, ref.float() if ref is not None else None)
            signs = batch["signs"].to(logps.device)
            ones = torch.ones(k, dtype=torch.float64, device=logps.device)
            loss_sum += objective_losses(pair, signs, list(objectives), ones).double().cpu()
            for i, spec in enumerate(objectives):
                r1, r2 = implicit_rewards(pair, spec)
                s = signs[:, i]
                keep = s != 0
                lead = (spec.beta * s * (r1 - r2))[keep].double()
                correct[i] += ((lead > 0).double() + 0.5 * (lead == 0).double()).sum().cpu()
                margin_sum[i] += lead.sum().cpu()
                counted[i] += keep.sum().cpu()
    finally:
        model.train(was_training)
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
