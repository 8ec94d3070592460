"""A follow-up sweep against benchmarks/pareto.py's run, on the same ground (issue 15).

    .venv/bin/python benchmarks/pareto_compare.py sweeps/pareto sweeps/pareto-length-normalised \
        --label "amopo loss"

Both folders are ``raco sweep`` folders (or pareto.py's DIR, whose ``sweep/`` is read). Printed: for
every method of the first and of the second (the latter's named ``<method> (<label>)``), restricted to
the second sweep's weight vectors, the hypervolume against the first sweep's nadir (the worst score of
any of its points or its base model, ``pareto.nadir``), per seed and mean ± sample std over seeds, and
each weight vector's mean scores. The two sweeps must judge the same objectives against the same base
model scores (same prompts and scorers), else the comparison is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pareto  # benchmarks/pareto.py: folders, nadir, table formatting


def _results(target: str) -> dict[str, Any]:
    _, folder = pareto.folders(target)
    return json.loads((folder / "results.json").read_text())


def compare(first: dict[str, Any], second: dict[str, Any], label: str) -> str:
    """The printed comparison (see the module docstring)."""
    from raco.sweep.front import seed_hypervolumes

    names, directions = first["eval_objectives"], first["directions"]
    if second["eval_objectives"] != names or second["base"] != first["base"]:
        raise pareto.Refused("the two sweeps judge different objectives or a different base model")
    reference = pareto.nadir(first["points"], first["base"], names, directions)
    weights = list(dict.fromkeys(tuple(p["weights"].values()) for p in second["points"]))
    groups: dict[str, list[dict[str, Any]]] = {}
    for results, suffix in ((first, ""), (second, f" ({label})")):
        for p in results["points"]:
            if tuple(p["weights"].values()) in weights:
                groups.setdefault(p["method"] + suffix, []).append(p)
    out = [
        "hypervolume against the first sweep's nadir ("
        + ", ".join(f"{n} {reference[n]:.4g}" for n in names)
        + ") at weights "
        + ", ".join("/".join(f"{w:.2f}" for w in v) for v in weights)
    ]
    rows = []
    for method, points in groups.items():
        hv = seed_hypervolumes(points, directions, reference)
        per_weight = []
        for vector in weights:
            mine = [p for p in points if tuple(p["weights"].values()) == vector]
            per_weight.append(
                "/".join(pareto._num(sum(p["scores"][n] for p in mine) / len(mine), ".3g") for n in names)
            )
        rows.append(
            [
                method,
                pareto._num(hv["mean"], ".4g"),
                "±",
                pareto._num(hv["std"], ".3g"),
                " ".join(f"s{s}={pareto._num(v, '.2f')}" for s, v in hv["per_seed"].items()),
                "  ".join(per_weight),
            ]
        )
    header = ["method", "mean", "", "std", "per seed", "mean " + "/".join(names) + " per weight vector"]
    return "\n".join(out + pareto._table(header, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pareto_compare.py", description=__doc__)
    parser.add_argument("first", help="the reference sweep (benchmarks/pareto.py's DIR)")
    parser.add_argument("second", help="the follow-up sweep")
    parser.add_argument("--label", default="follow-up", help="names the second sweep's methods")
    args = parser.parse_args(argv)
    try:
        print(compare(_results(args.first), _results(args.second), args.label))
    except (pareto.Refused, OSError, ValueError) as err:
        print(f"pareto_compare.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
