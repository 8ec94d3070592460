"""benchmarks/pareto.py (issue 15): the --quick sweep's printed tables against its results.json and
front.json, --print-only gives the same summary, and bad arguments are one line with exit status 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "pareto.py"


pareto = load_benchmark("pareto")


def _quick(folder: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RACO_CACHE": str(cache)}
    command = [sys.executable, str(SCRIPT), "--quick", "--output", str(folder)]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A finished --quick run: (its folder, its stdout, the raco cache folder it used)."""
    root = tmp_path_factory.mktemp("pareto")
    done = _quick(root / "out", root / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out", done.stdout, root / "cache"


def _section(text: str, name: str) -> list[list[str]]:
    """The rows of table ``[name]`` (header dropped), split on runs of 2+ spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"[{name}]"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith(("[", "highest", "every method", "raco ranks", "by mean")):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def _percent(cell: str) -> float | None:
    return None if cell == "–" else float(cell.rstrip("%")) / 100


def _summary_block(stdout: str) -> str:
    start = stdout.index("pareto: raco sweep in ")
    return stdout[start : stdout.index("\nplots and report")].strip()


def test_quick_tables_match_results_and_front(quick):
    folder, stdout, _ = quick
    sweep = folder / "sweep"
    results = json.loads((sweep / "results.json").read_text())
    front = json.loads((sweep / "front.json").read_text())["methods"]
    names = results["eval_objectives"]
    assert set(front) == {"raco", "weighted_sum"} and len(results["points"]) == 4
    text = _summary_block(stdout)
    assert "size: 4 points = 2 method(s) × 2 weight vector(s) × 1 seed(s)" in text
    assert "2 steps × batch 4" in text and "judged: 2 held-out prompts" in text
    assert re.search(r"wall time: \d+\.\d s over 1 invocation", text)

    hv = {row[0]: row for row in _section(text, "hypervolume")}
    assert set(hv) == set(front)
    for method, entry in front.items():
        row, volume = hv[method], entry["hypervolume"]
        assert float(row[1]) == pytest.approx(volume["mean"], rel=1e-5, abs=1e-12)
        assert row[2] == "±"
        assert float(row[3]) == pytest.approx(volume["std"], rel=1e-5, abs=1e-12)
        assert int(row[4]) == volume["seeds"] == 1
        assert float(row[5]) == pytest.approx(volume["all_seeds"], rel=1e-5, abs=1e-12)
        assert row[6] == f"{len(entry['front'])}/{len(entry['points'])}"

    # the nadir table against a 2-D hypervolume written out here: the worst score of any point or the base
    # per objective as the reference, the region the points dominate summed as a staircase
    scored = [*(p["scores"] for p in results["points"]), results["base"]]
    down = {n: results["directions"][n] == "lower" for n in names}
    ref = [max(s[n] if down[n] else -s[n] for s in scored) for n in names]  # minimisation
    nadir_rows = {row[0]: row for row in _section(text, "hypervolume vs nadir")}
    assert set(nadir_rows) == set(front)
    for method in front:
        mine = [[p["scores"][n] if down[n] else -p["scores"][n] for n in names] for p in results["points"]]
        mine = sorted(m for m, p in zip(mine, results["points"], strict=True) if p["method"] == method)
        area, lowest = 0.0, ref[1]
        for (a, b), nxt in zip(mine, [*(m[0] for m in mine[1:]), ref[0]], strict=True):
            lowest = min(lowest, b)
            area += (min(nxt, ref[0]) - a) * (ref[1] - lowest)
        row = nadir_rows[method]
        assert float(row[1]) == pytest.approx(area, rel=1e-5, abs=1e-12)  # 1 seed: mean = all seeds
        assert float(row[4]) == pytest.approx(area, rel=1e-5, abs=1e-12)
        assert row[2] == "±" and float(row[3]) == 0

    per_weight = _section(text, "per weight")
    assert len(per_weight) == 4 and {row[0] for row in per_weight} == set(front)
    k = len(names)
    for point in results["points"]:
        label = "/".join(f"{w:.2f}" for w in point["weights"].values())
        row = next(r for r in per_weight if r[0] == point["method"] and r[1] == label)
        relative = {
            n: point["improvements"][n] / abs(results["base"][n]) for n in names if results["base"][n]
        }
        for i, name in enumerate(names):
            assert float(row[3 + i]) == pytest.approx(point["scores"][name], rel=1e-3)
            shown = _percent(row[3 + k + i])
            assert shown == (None if name not in relative else pytest.approx(relative[name], abs=5e-5))
        assert _percent(row[-1]) == pytest.approx(min(relative.values()), abs=5e-5)
        assert _percent(row[-1]) == pytest.approx(point["worst_case_relative_improvement"], abs=5e-5)

    faithful = {row[0]: row[1:] for row in _section(text, "faithfulness")}
    assert set(faithful) == set(front)
    for method, entry in front.items():
        for cell, name in zip(faithful[method], names, strict=True):
            rho = entry["weight_faithfulness"].get(name)
            assert cell == "–" if rho is None else float(cell) == pytest.approx(rho, abs=5e-4)

    worst = {row[0]: row for row in _section(text, "worst case")}
    stability = {row[0]: row for row in _section(text, "stability")}
    assert set(worst) == set(stability) == set(front)
    for method in front:
        mine = [p for p in results["points"] if p["method"] == method]
        values = [p["worst_case_relative_improvement"] for p in mine]
        assert _percent(worst[method][2]) == pytest.approx(min(values), abs=5e-5)
        assert _percent(worst[method][3]) == pytest.approx(max(values), abs=5e-5)
        assert worst[method][4] == f"{sum(v > 0 for v in values)}/{len(mine)}"
        row = stability[method]
        assert int(row[1]) == sum(p["stability"]["steps"] for p in mine) == 4
        assert row[4] == f"{sum(1 for p in mine if p['stability']['loss_spike_count'])}/{len(mine)}"
        assert int(row[2]) == sum(p["stability"]["skipped_steps"] for p in mine)
        assert int(row[3]) == sum(p["stability"]["loss_spike_count"] for p in mine)

    for name in ("front.png", "hypervolume.png", "report.md", "report.html"):
        assert (folder / "report" / name).is_file()
    assert (folder / "pareto-summary.txt").read_text().strip() == text


def test_print_only_gives_the_same_summary(quick, capsys):
    folder, stdout, _ = quick
    assert pareto.main(["--print-only", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == _summary_block(stdout)


def test_print_only_reads_any_sweep_folder(quick, tmp_path, capsys):
    """A plain raco sweep folder (no pareto.json): the hypervolumes printed are front.json's, whatever
    they are, and the wall time is said to be unmeasured."""
    folder, _, _ = quick
    copy = tmp_path / "sweep"
    shutil.copytree(folder / "sweep", copy, ignore=shutil.ignore_patterns("points"))
    front = json.loads((copy / "front.json").read_text())
    volume = front["methods"]["raco"]["hypervolume"]
    volume.update(mean=1.234567, std=0.0421, all_seeds=2.5, per_seed={"0": 1.234567})
    (copy / "front.json").write_text(json.dumps(front))
    assert pareto.main(["--print-only", str(copy)]) == 0
    out = capsys.readouterr().out
    row = next(r for r in _section(out, "hypervolume") if r[0] == "raco")
    assert row[1:6] == ["1.23457", "±", "0.0421", "1", "2.5"]
    assert "highest mean hypervolume: raco (1.23457)" in out and "raco ranks 1 of 2" in out
    assert "wall time: not measured by pareto.py" in out


def test_stability_counts_each_training_run_once(quick, tmp_path, capsys):
    """Points of a weight-agnostic method share a run (``trained_as``): its steps, spikes and seconds
    count once, not once per point that reads it."""
    folder, _, _ = quick
    copy = tmp_path / "sweep"
    shutil.copytree(folder / "sweep", copy, ignore=shutil.ignore_patterns("points"))
    results = json.loads((copy / "results.json").read_text())
    first, second = [p for p in results["points"] if p["method"] == "raco"]
    second["trained_as"] = first["id"]
    second["stability"] = dict(first["stability"])
    second["wall_seconds"] = first["wall_seconds"]
    (copy / "results.json").write_text(json.dumps(results))
    assert pareto.main(["--print-only", str(copy)]) == 0
    row = next(r for r in _section(capsys.readouterr().out, "stability") if r[0] == "raco")
    assert int(row[1]) == first["stability"]["steps"] == 2  # one run of 2 steps, not 2 × 2
    assert row[4].endswith("/1")  # runs with spikes, of 1 run
    assert float(row[7]) == pytest.approx(first["wall_seconds"], abs=0.05)


@pytest.mark.parametrize(
    "argv",
    [
        ["--steps", "0"],
        ["--weights-grid", "0.3"],
        ["--seeds", "a,b"],
        ["--methods", "nope"],
        ["--bogus"],
        ["--print-only", "/nonexistent/sweep"],
        ["--print-only", "x", "--quick"],
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv, tmp_path, capsys):
    if "--methods" in argv:
        argv = [*argv, "--output", str(tmp_path / "out")]
    assert pareto.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pareto.py: error: ")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_different_sweep_in_the_folder_is_refused(quick, capsys):
    folder, _, _ = quick
    assert pareto.main(["--quick", "--steps", "3", "--output", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "holds another pareto sweep" in err and "overrides" in err


@pytest.mark.slow
def test_rerun_resumes_without_training(quick):
    """Re-running the finished sweep trains nothing and adds a second invocation to pareto.json."""
    folder, stdout, cache = quick
    again = _quick(folder, cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 of 4 runs already done" in again.stdout
    timing = json.loads((folder / "pareto.json").read_text())["invocations"]
    assert len(timing) == 2 and timing[1]["points_done_before"] == 4 and timing[1]["finished"]
    before = _summary_block(stdout).split("\n[hypervolume]")[1]
    assert _summary_block(again.stdout).split("\n[hypervolume]")[1] == before
