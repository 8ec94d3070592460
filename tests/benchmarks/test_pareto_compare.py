"""benchmarks/pareto_compare.py (issue 15): hypervolumes of a follow-up sweep against the first sweep's
nadir, on points small enough to work out by hand."""

from __future__ import annotations

import json
import math

import pytest

from .scripts import load_benchmark

compare_bench = load_benchmark("pareto_compare")


def _point(method, weights, seed, a, b):
    return {"method": method, "weights": dict(zip("ab", weights, strict=True)), "seed": seed,
            "scores": {"a": a, "b": b}}  # fmt: skip


def _results(points, base=None):
    return {
        "eval_objectives": ["a", "b"],
        "directions": {"a": "higher", "b": "lower"},
        "base": base or {"a": 0.5, "b": 10.0},
        "points": points,
    }


FIRST = _results([_point("m1", (1.0, 0.0), 0, 0.6, 8.0), _point("m1", (0.5, 0.5), 0, 0.4, 5.0)])
SECOND = _results([_point("m2", (0.5, 0.5), 0, 0.7, 6.0), _point("m2", (0.5, 0.5), 1, 0.5, 9.0)])


def _row(text, method):
    line = next(line for line in text.splitlines() if line.startswith(method + " ") or line == method)
    return line.split()


def test_hypervolumes_against_the_first_sweeps_nadir():
    text = compare_bench.compare(FIRST, SECOND, "new loss")
    # nadir of the first sweep and its base: a = min(0.6, 0.4, 0.5) = 0.4, b = max(8, 5, 10) = 10
    assert "(a 0.4, b 10) at weights 0.50/0.50" in text
    # m1 at 0.5/0.5 only: a = 0.4 sits on the nadir, so its box is empty
    assert _row(text, "m1")[1:4] == ["0", "±", "0"]
    # m2: seed 0 (0.7 − 0.4) × (10 − 6) = 1.2, seed 1 (0.5 − 0.4) × (10 − 9) = 0.1
    cells = _row(text, "m2")
    assert cells[:2] == ["m2", "(new"] and cells[2] == "loss)"
    assert float(cells[3]) == pytest.approx((1.2 + 0.1) / 2)
    assert float(cells[5]) == pytest.approx(math.sqrt(2 * 0.55**2), rel=1e-3)
    assert cells[6:8] == ["s0=1.20", "s1=0.10"]
    assert cells[8] == "0.6/7.5"  # mean scores at 0.5/0.5


def test_a_different_base_is_refused(tmp_path, capsys):
    other = _results(SECOND["points"], base={"a": 0.5, "b": 11.0})
    for name, results in (("first", FIRST), ("second", other)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
        (tmp_path / name / "front.json").write_text("{}")  # what marks a finished sweep folder
    assert compare_bench.main([str(tmp_path / "first"), str(tmp_path / "second")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pareto_compare.py: error: the two sweeps judge different objectives or a different base model"
    ]
