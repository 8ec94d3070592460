"""The numbers a sweep reports per method: Pareto fronts, hypervolumes (mean and spread over seeds), how
faithfully results follow the weights, and training stability. Pure functions of ``results.json``
points and ``metrics.jsonl`` records; no torch.

A *point* is one run of the sweep, a mapping with at least ``id``, ``method``, ``seed``, ``weights``
({training objective: w}), ``scores`` and ``improvements`` ({eval objective: float | None}).
``directions`` ({eval objective: "higher" | "lower"}) fixes the objectives and their order.

Orientation: every computation happens in *minimisation space*, x' = −x for a "higher" objective and
x' = x for a "lower" one, because moocore minimises. A point with a missing score (None, NaN or absent)
cannot be placed in score space: it is never on a front, adds no hypervolume, and is listed under
``excluded`` by :func:`method_fronts` (and by :func:`incomplete`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import moocore
import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import spearmanr

Point = Mapping[str, Any]
DIRECTIONS = ("higher", "lower")

# Loss-spike rule (see ``spike_steps``); the report prints SPIKE_RULE next to the counts.
SPIKE_WINDOW = 10
SPIKE_MADS = 3.0
SPIKE_RELATIVE = 0.5
SPIKE_RULE = (
    f"a step whose loss exceeds the median m of the previous {SPIKE_WINDOW} logged finite losses by more "
    f"than {SPIKE_MADS:g} × their median absolute deviation (MAD), or, when the MAD is 0, by more than "
    f"{SPIKE_RELATIVE:.0%} of |m|; the first {SPIKE_WINDOW} logged steps are never spikes"
)


def _objectives(directions: Mapping[str, str]) -> list[str]:
    """The objectives in ``directions``' order, after checking every direction is known."""
    if not directions:
        raise ValueError("directions: no objectives given")
    bad = {name: d for name, d in directions.items() if d not in DIRECTIONS}
    if bad:
        raise ValueError(f"directions: {bad} — each must be one of {DIRECTIONS}")
    return list(directions)


def to_minimisation(scores: ArrayLike, directions: Sequence[str]) -> np.ndarray:
    """Scores oriented so that smaller is better: x'_j = −x_j if ``directions[j]`` is "higher", else x_j.

    ``scores`` has the objectives on its last axis (one point, shape (k,), or n points, (n, k));
    returns float64 of the same shape (NaN stays NaN)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] != len(directions):
        raise ValueError(f"scores of shape {values.shape} do not have {len(directions)} objectives last")
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ValueError(f"directions: {bad} — each must be one of {DIRECTIONS}")
    sign = np.array([-1.0 if d == "higher" else 1.0 for d in directions])
    return values * sign


def score_matrix(points: Sequence[Point], directions: Mapping[str, str]) -> np.ndarray:
    """The (n, k) float64 matrix of the points' ``scores`` in ``directions``' order, *not* oriented;
    a missing score (None or absent key) is NaN."""
    names = _objectives(directions)
    rows = [[_number(point.get("scores", {}).get(name)) for name in names] for point in points]
    return np.array(rows, dtype=np.float64).reshape(len(points), len(names))


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _oriented(points: Sequence[Point], directions: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Minimisation-space scores of the points and the mask of the complete ones (every score finite)."""
    matrix = to_minimisation(score_matrix(points, directions), list(directions.values()))
    return matrix, np.isfinite(matrix).all(axis=1)


def incomplete(points: Sequence[Point], directions: Mapping[str, str]) -> list[str]:
    """Ids of the points with a missing or non-finite score for some objective of ``directions``."""
    _, complete = _oriented(points, directions)
    return [str(point["id"]) for point, ok in zip(points, complete, strict=True) if not ok]


def nondominated(points: Sequence[Point], directions: Mapping[str, str]) -> list[bool]:
    """Per point, whether it is on the Pareto front of ``points``: no other complete point is at least
    as good in every objective and strictly better in one (``moocore.is_nondominated`` in minimisation
    space).

    Ties: a point equal to another in some objectives and worse in one is dominated. Exact duplicates of
    a non-dominated score vector are *all* on the front (``keep_weakly=True``), so the answer does not
    depend on the order of the points. A point with a missing score is False (see :func:`incomplete`)."""
    matrix, complete = _oriented(points, directions)
    flags: np.ndarray = np.zeros(len(points), dtype=bool)
    if complete.any():
        flags[complete] = moocore.is_nondominated(matrix[complete], keep_weakly=True)
    return [bool(flag) for flag in flags]


def hypervolume(
    points: Sequence[Point], reference: Mapping[str, float | None], directions: Mapping[str, str]
) -> float:
    """HV = Lebesgue measure of ∪_p [p', r'] — the region dominated by the oriented points p' and bounded
    by the oriented reference point r' (``moocore.hypervolume``; with the base model's scores as the
    reference, the volume of score space in which the points beat the base model).

    A point contributes only the part of its box [p', r'] inside the reference box; a point that does
    not strictly beat the reference in every objective (p'_j ≥ r'_j for some j) has an empty box and adds
    0 (moocore drops it; the tests check this). Points with a missing score add nothing; no complete
    point gives 0.0. Every objective of ``directions`` needs a finite reference value."""
    names = _objectives(directions)
    missing = [name for name in names if not math.isfinite(_number(reference.get(name)))]
    if missing:
        raise ValueError(f"hypervolume reference: no finite value for {missing} (given {dict(reference)})")
    ref = to_minimisation([_number(reference.get(name)) for name in names], list(directions.values()))
    matrix, complete = _oriented(points, directions)
    if not complete.any():
        return 0.0
    return float(moocore.hypervolume(matrix[complete], ref=ref))


def method_fronts(
    points: Sequence[Point], directions: Mapping[str, str], reference: Mapping[str, float | None]
) -> dict[str, dict[str, Any]]:
    """Per method (in order of first appearance), JSON-ready::

        {"points": [ids], "excluded": [ids with a missing score], "front": [ids on the method's front,
         over all its seeds], "hypervolume": {"all_seeds": HV of all its points, "per_seed": {"<seed>": HV
         of that seed's points, or None when none of them is complete}, "mean": mean over seeds,
         "std": sample std (ddof = 1) over seeds, "seeds": how many seeds the two average}}

    ``per_seed`` keys are ``str(seed)`` (JSON object keys; front.json reads back equal). With one seed
    ``std`` is 0.0 — no spread can be measured, not a measured zero; with no complete seed, ``mean`` and
    ``std`` are None."""
    by_method: dict[str, list[Point]] = {}
    for point in points:
        by_method.setdefault(str(point["method"]), []).append(point)
    out: dict[str, dict[str, Any]] = {}
    for method, members in by_method.items():
        flags = nondominated(members, directions)
        out[method] = {
            "points": [str(p["id"]) for p in members],
            "excluded": incomplete(members, directions),
            "front": [str(p["id"]) for p, on in zip(members, flags, strict=True) if on],
            "hypervolume": seed_hypervolumes(members, directions, reference),
        }
    return out


def seed_hypervolumes(
    members: Sequence[Point], directions: Mapping[str, str], reference: Mapping[str, float | None]
) -> dict[str, Any]:
    """The ``hypervolume`` entry of :func:`method_fronts` for ``members`` (points of one method, or any
    group): HV of all of them, of each seed's, and mean and sample std over the seeds."""
    by_seed: dict[str, list[Point]] = {}
    for point in members:
        by_seed.setdefault(str(point["seed"]), []).append(point)
    per_seed: dict[str, float | None] = {}
    for seed, group in by_seed.items():
        usable = len(incomplete(group, directions)) < len(group)
        per_seed[seed] = hypervolume(group, reference, directions) if usable else None
    values = [v for v in per_seed.values() if v is not None]
    mean = float(np.mean(values)) if values else None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else (0.0 if values else None)
    return {
        "all_seeds": hypervolume(members, reference, directions),
        "per_seed": per_seed,
        "mean": mean,
        "std": std,
        "seeds": len(values),
    }


def weight_faithfulness(
    points: Sequence[Point], weight_objectives: Mapping[str, str] | None = None
) -> dict[str, dict[str, float | None]]:
    """Per method and eval objective o: Spearman's ρ between the weight of o's training objective and
    o's ``improvement`` (direction-signed, positive = better) over the method's points
    (``scipy.stats.spearmanr``; ties get average ranks). ρ = 1: more weight always bought more of o.

    ``weight_objectives`` maps eval objective → training objective (default: every eval objective
    that is also a weight name, mapped to itself). Points whose improvement is None or non-finite are
    left out; ρ is None (undefined) with fewer than 3 remaining points, when the weights or the
    improvements are all equal, or when no point weighs the mapped training objective (an eval-only
    objective). Some points weighing it and others not is an error (inconsistent results)."""
    by_method: dict[str, list[Point]] = {}
    for point in points:
        by_method.setdefault(str(point["method"]), []).append(point)
    mapping = dict(weight_objectives) if weight_objectives is not None else _same_names(points)
    out: dict[str, dict[str, float | None]] = {}
    for method, members in by_method.items():
        out[method] = {}
        for eval_name, train_name in mapping.items():
            weights, gains = [], []
            weighed = [train_name in point["weights"] for point in members]
            if not any(weighed):
                out[method][eval_name] = None
                continue
            for point in members:
                if train_name not in point["weights"]:
                    raise ValueError(
                        f"point {point['id']}: no weight for training objective {train_name!r} "
                        f"(mapped from eval objective {eval_name!r}); weights: {dict(point['weights'])}"
                    )
                gain = _number(point.get("improvements", {}).get(eval_name))
                if math.isfinite(gain):
                    weights.append(float(point["weights"][train_name]))
                    gains.append(gain)
            out[method][eval_name] = _spearman(weights, gains)
    return out


def _same_names(points: Sequence[Point]) -> dict[str, str]:
    names: dict[str, str] = {}
    for point in points:
        for name in point.get("improvements", {}):
            if name in point["weights"]:
                names.setdefault(name, name)
    return names


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 3 or len(set(x)) == 1 or len(set(y)) == 1:
        return None
    rho = float(spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else None


def spike_steps(series: Sequence[tuple[int, float]]) -> list[int]:
    """Steps of ``series`` ((step, loss) in logged order) that are loss spikes: with m and MAD the median
    and median absolute deviation of the previous ``SPIKE_WINDOW`` finite losses, loss L is a spike when
    L − m > ``SPIKE_MADS`` · MAD, or, if MAD = 0, when L − m > ``SPIKE_RELATIVE`` · |m|. Non-finite losses
    are neither tested nor part of any window; a spike stays in later windows."""
    finite = [(step, loss) for step, loss in series if math.isfinite(loss)]
    spikes = []
    for i in range(SPIKE_WINDOW, len(finite)):
        window = np.array([loss for _, loss in finite[i - SPIKE_WINDOW : i]])
        median = float(np.median(window))
        mad = float(np.median(np.abs(window - median)))
        limit = SPIKE_MADS * mad if mad > 0 else SPIKE_RELATIVE * abs(median)
        step, loss = finite[i]
        if loss - median > limit:
            spikes.append(step)
    return spikes


def stability(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Training stability of one run from its ``metrics.jsonl`` records (docs/metrics.md)::

        {"steps": logged training steps, "skipped_steps": how many have skipped = 1,
         "loss_spikes": [steps] (SPIKE_RULE on ``loss``), "loss_spike_count": their number,
         "objective_loss_spikes": {objective: [steps]} (the same rule on ``<objective>/loss``),
         "clip_fraction": share of the steps that log clip_active with clip_active = 1, or None when no
         step logs it (the weighted-sum path, methods without clipping)}

    Training records are those with a ``loss`` or ``skipped`` key (evaluation records carry only
    ``eval/…`` keys and are ignored). Counts are over *logged* steps: exact with ``log.every`` = 1."""
    train = [r for r in records if "loss" in r or "skipped" in r]
    steps = [int(r.get("step", i)) for i, r in enumerate(train)]
    losses = {k for r in train for k in r if k.endswith("/loss") and not k.startswith("eval/")}
    objectives = sorted(k.removesuffix("/loss") for k in losses)
    clip = [float(r["clip_active"]) for r in train if r.get("clip_active") is not None]
    spikes = spike_steps(_series(train, steps, "loss"))
    return {
        "steps": len(train),
        "skipped_steps": sum(1 for r in train if _number(r.get("skipped")) == 1.0),
        "loss_spikes": spikes,
        "loss_spike_count": len(spikes),
        "objective_loss_spikes": {
            name: spike_steps(_series(train, steps, f"{name}/loss")) for name in objectives
        },
        "clip_fraction": sum(1 for c in clip if c == 1.0) / len(clip) if clip else None,
    }


def _series(train: Sequence[Mapping[str, Any]], steps: Sequence[int], key: str) -> list[tuple[int, float]]:
    return [(step, _number(r[key])) for step, r in zip(steps, train, strict=True) if r.get(key) is not None]


def worst_case_improvement(point: Point, base: Mapping[str, float | None]) -> float | None:
    """min_o improvement_o / |base_o| over the point's objectives — the relative improvement of the
    objective the run served worst, as ``raco eval`` computes ``worst_case_relative_improvement``
    (improvements are direction-signed, positive = better). Objectives whose improvement is missing or
    whose base score is missing or 0 are left out; None when none is left."""
    relative = []
    for name, gain in point.get("improvements", {}).items():
        value, reference = _number(gain), _number(base.get(name))
        if math.isfinite(value) and math.isfinite(reference) and reference != 0:
            relative.append(value / abs(reference))
    return min(relative) if relative else None
