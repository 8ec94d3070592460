"""raco.sweep.front against numbers worked out by hand: fronts and hypervolumes in 2-D and 3-D (unions of
boxes), mixed directions, missing scores, per-seed mean and spread, Spearman on hand-ranked weights, the
loss-spike rule and the stability counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raco.sweep.front import (
    hypervolume,
    incomplete,
    method_fronts,
    nondominated,
    score_matrix,
    spike_steps,
    stability,
    to_minimisation,
    weight_faithfulness,
    worst_case_improvement,
)

LOWER2 = {"x": "lower", "y": "lower"}
REF2 = {"x": 4.0, "y": 4.0}


def _point(pid, scores, method="raco", seed=0, weights=None, improvements=None):
    return {
        "id": pid,
        "method": method,
        "seed": seed,
        "weights": weights or {},
        "scores": scores,
        "improvements": improvements or {},
    }


def _points2(*coords, **kw):
    return [_point(f"p{i}", {"x": x, "y": y}, **kw) for i, (x, y) in enumerate(coords)]


STAIRS = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]


# ---- orientation -------------------------------------------------------------------------------------


def test_to_minimisation_negates_higher_only():
    out = to_minimisation([[1.0, 2.0], [-3.0, 4.0]], ["higher", "lower"])
    np.testing.assert_array_equal(out, [[-1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(to_minimisation([5.0, 6.0], ["lower", "higher"]), [5.0, -6.0])


def test_to_minimisation_refuses_bad_input():
    with pytest.raises(ValueError, match="objectives last"):
        to_minimisation([[1.0, 2.0, 3.0]], ["higher", "lower"])
    with pytest.raises(ValueError, match="one of"):
        to_minimisation([1.0], ["up"])
    with pytest.raises(ValueError, match="one of"):
        nondominated(_points2((1.0, 1.0)), {"x": "lower", "y": "better"})


def test_score_matrix_keeps_directions_order_and_marks_missing():
    points = [_point("a", {"y": 2.0, "x": 1.0}), _point("b", {"x": None}), _point("c", {"x": 3.0, "y": 4.0})]
    m = score_matrix(points, {"y": "higher", "x": "lower"})
    assert m.shape == (3, 2)
    np.testing.assert_array_equal(m[0], [2.0, 1.0])  # y first: directions' order, not oriented
    assert np.isnan(m[1]).all()
    assert incomplete(points, LOWER2) == ["b"]


# ---- 2-D fronts and hypervolume ------------------------------------------------------------------------


def test_hypervolume_2d_stairs_by_hand():
    # Boxes up to (4, 4), swept along x: [1,2)·(4−3) + [2,3)·(4−2) + [3,4)·(4−1) = 1 + 2 + 3 = 6.
    points = _points2(*STAIRS)
    assert hypervolume(points, REF2, LOWER2) == pytest.approx(6.0, abs=1e-12)
    assert nondominated(points, LOWER2) == [True, True, True]


def test_dominated_point_changes_nothing_but_is_off_the_front():
    points = _points2(*STAIRS, (3.0, 3.0), (2.0, 3.5))
    assert hypervolume(points, REF2, LOWER2) == pytest.approx(6.0, abs=1e-12)
    assert nondominated(points, LOWER2) == [True, True, True, False, False]


def test_points_outside_the_reference_box_add_nothing():
    # (5, 0) is worse than the reference in x, (4, 0.5) only equal to it: both boxes [p, r] are empty.
    # Both are still non-dominated (nothing beats their y).
    points = _points2(*STAIRS, (5.0, 0.0), (4.0, 0.5))
    assert hypervolume(points, REF2, LOWER2) == pytest.approx(6.0, abs=1e-12)
    assert nondominated(points, LOWER2) == [True, True, True, True, True]
    assert hypervolume(_points2((5.0, 0.0)), REF2, LOWER2) == 0.0
    # Only the part inside the box counts: (2, 2) alone against (4, 4) is 2 × 2, against (3, 5) 1 × 3.
    assert hypervolume(_points2((2.0, 2.0)), {"x": 3.0, "y": 5.0}, LOWER2) == pytest.approx(3.0)


def test_ties_and_duplicates():
    # Equal x, worse y: weakly dominated, off the front. Exact duplicates of a front point: all on it,
    # whatever their order.
    points = _points2((1.0, 3.0), (1.0, 4.0), (2.0, 2.0), (2.0, 2.0))
    assert nondominated(points, LOWER2) == [True, False, True, True]
    assert nondominated(points[::-1], LOWER2) == [True, True, False, True]
    assert hypervolume(points, REF2, LOWER2) == pytest.approx(1.0 * 1.0 + 2.0 * 2.0)


def test_mixed_directions_give_the_same_numbers_as_after_negation():
    # helpful = 10 − x ("higher"), short = y ("lower"); in minimisation space helpful' = x − 10, a shift
    # of the stairs and of the reference alike, so the volume is still 6 and the front the same.
    directions = {"helpful": "higher", "short": "lower"}
    points = [_point(f"p{i}", {"helpful": 10.0 - x, "short": y}) for i, (x, y) in enumerate(STAIRS)]
    points.append(_point("dominated", {"helpful": 10.0 - 3.0, "short": 3.0}))
    reference = {"helpful": 10.0 - 4.0, "short": 4.0}
    assert hypervolume(points, reference, directions) == pytest.approx(6.0, abs=1e-12)
    assert nondominated(points, directions) == [True, True, True, False]
    # Read with the wrong direction, every point is worse than the reference in helpful.
    assert hypervolume(points, reference, {"helpful": "lower", "short": "lower"}) == 0.0


def test_missing_scores_are_excluded_and_reported():
    # "ghost" would dominate everything, but one of its scores is missing: not on the front, no volume.
    points = [*_points2(*STAIRS), _point("ghost", {"x": 0.0, "y": None}), _point("nan", {"x": math.nan})]
    assert nondominated(points, LOWER2) == [True, True, True, False, False]
    assert hypervolume(points, REF2, LOWER2) == pytest.approx(6.0, abs=1e-12)
    assert incomplete(points, LOWER2) == ["ghost", "nan"]
    assert hypervolume(points[3:], REF2, LOWER2) == 0.0
    with pytest.raises(ValueError, match="no finite value for \\['y'\\]"):
        hypervolume(points, {"x": 4.0, "y": None}, LOWER2)


# ---- 3-D ------------------------------------------------------------------------------------------------


def test_hypervolume_3d_union_of_boxes_by_hand():
    # Reference r = (4, 4, 4); boxes [p, r]:
    #   A = (1, 2, 3): [1,4]×[2,4]×[3,4] = 3·2·1 = 6
    #   B = (2, 1, 2): [2,4]×[1,4]×[2,4] = 2·3·2 = 12
    #   C = (3, 3, 1): [3,4]×[3,4]×[1,4] = 1·1·3 = 3
    #   A∩B = [2,4]×[2,4]×[3,4] = 4;  A∩C = [3,4]×[3,4]×[3,4] = 1;  B∩C = [3,4]×[3,4]×[2,4] = 2
    #   A∩B∩C = [3,4]×[3,4]×[3,4] = 1
    #   |A∪B| = 6 + 12 − 4 = 14;  |A∪B∪C| = 6 + 12 + 3 − 4 − 1 − 2 + 1 = 15
    directions = {"a": "lower", "b": "lower", "c": "lower"}
    reference = {"a": 4.0, "b": 4.0, "c": 4.0}
    coords = {"A": (1.0, 2.0, 3.0), "B": (2.0, 1.0, 2.0), "C": (3.0, 3.0, 1.0), "D": (2.0, 2.0, 3.0)}
    points = [_point(pid, dict(zip("abc", c, strict=True))) for pid, c in coords.items()]
    assert hypervolume(points[:2], reference, directions) == pytest.approx(14.0, abs=1e-12)
    assert hypervolume(points, reference, directions) == pytest.approx(15.0, abs=1e-12)
    assert nondominated(points, directions) == [True, True, True, False]  # D is dominated by B
    # The same set with c maximised (scores −c, reference −4) is the same problem.
    flipped = [_point(p["id"], {**p["scores"], "c": -p["scores"]["c"]}) for p in points]
    mixed = {"a": "lower", "b": "lower", "c": "higher"}
    assert hypervolume(flipped, {**reference, "c": -4.0}, mixed) == pytest.approx(15.0, abs=1e-12)


# ---- per method, per seed -------------------------------------------------------------------------------


def test_method_fronts_per_seed_mean_and_sample_std_by_hand():
    points = [
        _point("r0a", {"x": 1.0, "y": 3.0}, seed=0),  # seed 0: stairs (1,3),(3,1): 1·2 + 1·3 = 5
        _point("r0b", {"x": 3.0, "y": 1.0}, seed=0),
        _point("r1", {"x": 2.0, "y": 2.0}, seed=1),  # seed 1: 2·2 = 4
        _point("d1", {"x": 2.0, "y": 2.0}, method="dpo", seed=1),  # dpo, one seed: 4
        _point("r2", {"x": 1.0, "y": 1.0}, seed=2),  # seed 2: 3·3 = 9; dominates every raco point
        _point("r3", {"x": None, "y": 1.0}, seed=3),  # seed 3: no complete point
    ]
    fronts = method_fronts(points, LOWER2, REF2)
    assert list(fronts) == ["raco", "dpo"]
    raco = fronts["raco"]
    assert raco["points"] == ["r0a", "r0b", "r1", "r2", "r3"]
    assert raco["front"] == ["r2"]
    assert raco["excluded"] == ["r3"]
    hv = raco["hypervolume"]
    assert hv["per_seed"] == {
        "0": pytest.approx(5.0),
        "1": pytest.approx(4.0),
        "2": pytest.approx(9.0),
        "3": None,
    }
    assert hv["all_seeds"] == pytest.approx(9.0)
    assert hv["seeds"] == 3
    # mean (5 + 4 + 9) / 3 = 6; deviations −1, −2, 3: sample variance (1 + 4 + 9) / (3 − 1) = 7.
    assert hv["mean"] == pytest.approx(6.0)
    assert hv["std"] == pytest.approx(math.sqrt(7.0))
    dpo = fronts["dpo"]["hypervolume"]
    assert (dpo["mean"], dpo["std"], dpo["seeds"]) == (pytest.approx(4.0), 0.0, 1)  # one seed: std 0.0
    assert fronts["dpo"]["front"] == ["d1"]


def test_method_fronts_with_no_complete_point():
    fronts = method_fronts([_point("a", {"x": None, "y": None})], LOWER2, REF2)
    hv = fronts["raco"]["hypervolume"]
    assert (hv["mean"], hv["std"], hv["seeds"], hv["all_seeds"]) == (None, None, 0, 0.0)
    assert fronts["raco"]["front"] == [] and fronts["raco"]["excluded"] == ["a"]


# ---- weight faithfulness --------------------------------------------------------------------------------


def _weighted(method, weights, gains, name="helpful"):
    return [
        _point(f"{method}{i}", {}, method=method, weights={name: w, "other": 1 - w}, improvements={"h": g})
        for i, (w, g) in enumerate(zip(weights, gains, strict=True))
    ]


def test_spearman_monotone_reversed_and_hand_ranked():
    weights = [0.1, 0.3, 0.5, 0.7]
    points = (
        _weighted("up", weights, [0.01, 0.5, 0.6, 3.0])  # monotone but not linear: ρ = 1
        + _weighted("down", weights, [2.0, 1.0, -1.0, -5.0])  # reversed: ρ = −1
        # ranks of the gains 1, 3, 2, 4: d = 0, 1, −1, 0, ρ = 1 − 6·Σd² / (n(n²−1)) = 1 − 12/60 = 0.8
        + _weighted("mixed", weights, [1.0, 3.0, 2.0, 4.0])
    )
    out = weight_faithfulness(points, {"h": "helpful"})
    assert out["up"]["h"] == pytest.approx(1.0)
    assert out["down"]["h"] == pytest.approx(-1.0)
    assert out["mixed"]["h"] == pytest.approx(0.8)


def test_spearman_undefined_cases_are_none():
    points = (
        _weighted("flat", [0.5, 0.5, 0.5, 0.5], [1.0, 2.0, 3.0, 4.0])  # constant weights
        + _weighted("two", [0.1, 0.9], [1.0, 2.0])  # fewer than 3 points
        + _weighted("same", [0.1, 0.2, 0.3], [1.0, 1.0, 1.0])  # constant improvements
        # one improvement missing leaves 3 points, still monotone
        + _weighted("gap", [0.1, 0.2, 0.3, 0.4], [1.0, None, 2.0, 5.0])
    )
    out = weight_faithfulness(points, {"h": "helpful"})
    assert out == {
        "flat": {"h": None},
        "two": {"h": None},
        "same": {"h": None},
        "gap": {"h": pytest.approx(1.0)},
    }


def test_default_mapping_is_same_names_and_unknown_weight_is_an_error():
    points = [
        _point(
            f"p{i}", {}, weights={"helpful": w, "harmless": 1 - w}, improvements={"helpful": g, "length": g}
        )
        for i, (w, g) in enumerate([(0.2, 1.0), (0.5, 2.0), (0.8, 3.0)])
    ]
    # length is no training objective: left out by default. harmless has no improvement: no points.
    assert weight_faithfulness(points) == {"raco": {"helpful": pytest.approx(1.0)}}
    # An eval-only objective (no point weighs its training objective): undefined, not an error.
    assert weight_faithfulness(points, {"length": "brevity"}) == {"raco": {"length": None}}
    # Some points weighing it and others not: inconsistent results, an error naming the point.
    points[1]["weights"] = {"harmless": 0.5}
    with pytest.raises(ValueError, match="point p1: no weight for training objective 'helpful'"):
        weight_faithfulness(points, {"helpful": "helpful"})


# ---- stability ------------------------------------------------------------------------------------------


def test_spike_rule_relative_when_mad_is_zero():
    # Ten losses of 1.0: median 1, MAD 0, so the limit is 50 % of 1. Step 10: 1.4 is +40 %, no spike.
    # Step 11: the window is nine 1.0 and 1.4, median 1, MAD 0 still; 1.6 is +60 %: a spike.
    series = [(s, 1.0) for s in range(10)] + [(10, 1.4), (11, 1.6)]
    assert spike_steps(series) == [11]


def test_spike_rule_mad_when_positive():
    # Window 1.0 1.1 0.9 1.0 1.2 0.8 1.0 1.1 0.9 1.0: median 1.0; |deviations| sorted
    # 0 0 0 0 .1 .1 .1 .1 .2 .2, MAD 0.1; limit 1.0 + 3·0.1 = 1.3. 1.35 is a spike (under the 50 % rule
    # it would not be); 1.25 is not.
    window = [1.0, 1.1, 0.9, 1.0, 1.2, 0.8, 1.0, 1.1, 0.9, 1.0]
    assert spike_steps([*enumerate(window), (10, 1.35)]) == [10]
    assert spike_steps([*enumerate(window), (10, 1.25)]) == []


def test_spike_rule_needs_a_full_window_and_skips_non_finite():
    early = [(0, 1.0), (1, 1.0), (2, 50.0)] + [(s, 1.0) for s in range(3, 10)]
    assert spike_steps(early) == []  # the first 10 logged losses are never spikes
    # A NaN is neither tested nor part of a window: step 11 is compared with the ten 1.0 before it.
    with_nan = [(s, 1.0) for s in range(10)] + [(10, math.nan), (11, 2.0)]
    assert spike_steps(with_nan) == [11]


def test_stability_counts_from_records():
    records = []
    for step in range(12):
        loss = 1.0 if step < 11 else 2.0
        record = {"step": step, "loss": loss, "helpful/loss": 0.5, "harmless/loss": 0.5, "skipped": 0.0}
        if step == 10:
            record["helpful/loss"] = 5.0  # +900 %: a spike of helpful only
        if step < 8:  # logged on 8 steps (say, a method that clips only then), active on 0 and 4
            record["clip_active"] = 1.0 if step % 4 == 0 else 0.0
        records.append(record)
    records[3]["skipped"] = 1.0
    records[7].update(skipped=1.0, loss=math.nan)
    records.append({"step": 11, "eval/helpful/loss": 9.0, "eval/helpful/rewards/accuracies": 0.5})
    out = stability(records)
    assert out == {
        "steps": 12,
        "skipped_steps": 2,
        # loss at 7 is NaN, so step 11 has 10 finite predecessors (0..10 without 7): median 1, limit 1.5
        "loss_spikes": [11],
        "loss_spike_count": 1,
        "objective_loss_spikes": {"harmless": [], "helpful": [10]},
        "clip_fraction": pytest.approx(2 / 8),  # of the steps that log it, not of all 12
    }


def test_stability_without_clip_activity():
    records = [{"step": s, "loss": 1.0, "skipped": 0.0} for s in range(3)]
    out = stability(records)
    assert out["clip_fraction"] is None
    assert (out["steps"], out["skipped_steps"], out["loss_spikes"]) == (3, 0, [])


# ---- worst case -----------------------------------------------------------------------------------------


def test_worst_case_improvement():
    point = _point("p", {}, improvements={"a": 0.2, "b": -0.1, "c": None, "d": 1.0})
    base = {"a": 2.0, "b": -0.5, "c": 1.0, "d": 0.0}
    # a: 0.2 / 2 = 0.1; b: −0.1 / |−0.5| = −0.2; c missing; d has base 0: left out.
    assert worst_case_improvement(point, base) == pytest.approx(-0.2)
    assert worst_case_improvement(_point("q", {}, improvements={"c": None}), base) is None
