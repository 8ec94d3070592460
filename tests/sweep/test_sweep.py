"""`raco sweep` end to end on the tiny model: 2 methods × 3 weight vectors, every point a normal run
directory judged by raco eval against the base model evaluated once; reference log-probs computed once
and shared; resumable after any kind of interruption; bad sweeps refused before anything long."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from raco.cli import main
from raco.config_tree import ConfigError
from raco.sweep.config import dirichlet, load_sweep_config, point_id, simplex_grid
from raco.sweep.run import FRONT_JSON, RESULTS_CSV, RESULTS_JSON, Launcher, run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from toy_data import tiny_tree, write_toy

EVAL = {
    "objectives": [
        {"name": "chars", "scorer": "length:unit=characters", "direction": "lower"},
        {"name": "words", "scorer": "length:unit=words", "direction": "higher"},
    ],
    "generation": {"max_new_tokens": 3},
    "prompts": {"max_prompts": 2},
    "eval_batch_size": 32,
}


def _files(root: Path) -> Path:
    train = write_toy(root / "train.jsonl", 48, seed=0)
    held_out = write_toy(root / "eval.jsonl", 16, seed=1)
    tree = tiny_tree(train, held_out, root / "unused", **{"train.max_steps": 2})
    tree["model"]["reference"] = "auto"
    (root / "train.yaml").write_text(yaml.safe_dump(tree))
    sweep = {
        "train": "train.yaml",
        "methods": ["raco", "weighted_sum"],
        "weights": {"vectors": [[0.8, 0.2], [0.5, 0.5], [0.2, 0.8]]},
        "seeds": [0],
        "eval": EVAL,
        "output_dir": str(root / "sweep"),
    }
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return root / "sweep.yaml"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished 6-point sweep (and the cache folder its points shared)."""
    root = tmp_path_factory.mktemp("sweep")
    cache = root / "cache"
    patch = pytest.MonkeyPatch()
    patch.setenv("RACO_CACHE", str(cache))
    try:
        sweep_file = _files(root)
        status = main(["sweep", "--config", str(sweep_file)])
    finally:
        patch.undo()
    assert status == 0
    return root, sweep_file, cache


def test_results_follow_from_the_points_and_the_base(done):
    root, _, cache = done
    folder = root / "sweep"
    results = json.loads((folder / RESULTS_JSON).read_text())
    ids = [p["id"] for p in results["points"]]
    assert len(ids) == 6 and ids[0] == point_id("raco", (0.8, 0.2), 0)
    judged = json.loads((folder / "base-eval" / "eval.json").read_text())["objectives"]
    base = judged["chars"]["base"]
    assert results["base"] == {"chars": base, "words": judged["words"]["base"]}
    assert results["directions"] == {"chars": "lower", "words": "higher"}
    for point in results["points"]:
        run = folder / point["run_dir"]
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["method"]["name"] == point["method"]
        assert [o["weight"] for o in config["objectives"]] == list(point["weights"].values())
        tuned = json.loads((run / "eval" / "eval.json").read_text())["objectives"]["chars"]["tuned"]
        assert point["scores"]["chars"] == tuned
        assert point["improvements"]["chars"] == pytest.approx(base - tuned)  # lower is better
        assert set(point["preference"]) == {
            "eval/friendly/rewards/accuracies",
            "eval/concise/rewards/accuracies",
        }
        assert point["stability"]["skipped_steps"] == 0
        # win rate over the base, prompt by prompt (lower is better for chars; ties count half)
        mine = [json.loads(x)["scores"]["chars"] for x in (run / "eval" / "generations.jsonl").open()]
        theirs = [
            json.loads(x)["scores"]["chars"] for x in (folder / "base-eval" / "generations.jsonl").open()
        ]
        pairs = list(zip(mine, theirs, strict=True))
        wins = (sum(m < t for m, t in pairs) + 0.5 * sum(m == t for m, t in pairs)) / len(pairs)
        assert point["win_rates"]["chars"] == pytest.approx(wins)
    fronts = json.loads((folder / FRONT_JSON).read_text())
    assert fronts["reference_point"] == results["base"]
    assert set(fronts["methods"]) == {"raco", "weighted_sum"}
    for method, entry in fronts["methods"].items():
        assert set(entry["front"]) <= {p["id"] for p in results["points"] if p["method"] == method}
        assert entry["hypervolume"]["mean"] >= 0
    lines = (folder / RESULTS_CSV).read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("id,method,seed,weights.friendly,weights.concise")
    # the reference log-probs (train and held-out rows) were computed once for all six points
    assert len(list((cache / "reference-logps").glob("*.safetensors"))) == 2


def test_a_rerun_resumes_whatever_was_left(done, monkeypatch, capsys):
    root, sweep_file, cache = done
    monkeypatch.setenv("RACO_CACHE", str(cache))
    folder = root / "sweep"
    before = json.loads((folder / RESULTS_JSON).read_text())
    first, second = before["points"][0]["id"], before["points"][1]["id"]
    shutil.rmtree(folder / "points" / first / "eval")  # killed while evaluating
    run = folder / "points" / second
    (run / "summary.json").unlink()  # killed between its last checkpoint and its model
    shutil.rmtree(run / "model")
    third = folder / "points" / before["points"][2]["id"] / "eval" / "eval.json"
    untouched = third.stat().st_mtime_ns
    assert main(["sweep", "--config", str(sweep_file)]) == 0
    printed = capsys.readouterr().out
    assert "4 of 6 runs already done" in printed
    assert "worst case" in printed and all(p["id"] in printed for p in before["points"])
    after = json.loads((folder / RESULTS_JSON).read_text())
    strip = [{k: v for k, v in p.items() if k != "wall_seconds"} for p in before["points"]]
    assert [{k: v for k, v in p.items() if k != "wall_seconds"} for p in after["points"]] == strip
    assert (
        folder / "points" / before["points"][2]["id"] / "eval" / "eval.json"
    ).stat().st_mtime_ns == untouched


def test_another_sweep_in_the_same_folder_is_refused(done, capsys):
    _, sweep_file, _ = done
    status = main(["sweep", "--config", str(sweep_file), "--methods", "raco", "--seeds", "0,1"])
    err = capsys.readouterr().err
    assert status == 2 and "holds another sweep" in err and "methods, seeds" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--weights", "{vectors: [[0.5, 0.3, 0.2]]}"], "has 3 entries for 2 training objectives"),
        (["--weights", "{vectors: [[1.2, -0.2]]}"], "must not be negative"),
        (["--weights", "{vectors: [[0.5, 0.4]]}"], "must sum to 1"),
        (["--methods", "raco,mgdaa"], "did you mean `mgda`"),
        (["--eval.objectives.chars.scorer", "lenght"], "did you mean `length`"),
        (["--metods", "raco"], "did you mean `methods`"),
        (["--weights", "{grid: 0.3}"], "the step must divide 1"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, capsys, flags, message):
    sweep_file = _files(tmp_path)
    parsed = [yaml.safe_load(f) if f.startswith("{") else f for f in flags]
    status = main(
        [
            "sweep",
            "--config",
            str(sweep_file),
            *[str(f) if not isinstance(f, dict) else json.dumps(f) for f in parsed],
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "sweep").exists()


def test_weight_grids():
    assert simplex_grid(2, 0.5) == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    grid = simplex_grid(3, 0.25)
    assert len(grid) == 15 and all(abs(sum(v) - 1) < 1e-12 for v in grid)  # C(4 + 2, 2)
    drawn = dirichlet(3, 4, seed=7)
    assert drawn == dirichlet(3, 4, seed=7) != dirichlet(3, 4, seed=8)
    assert all(sum(v) == pytest.approx(1, abs=1e-9) and min(v) >= 0 for v in drawn)


def test_one_point_through_submitit(tmp_path, monkeypatch):
    """The cluster path (submitit), with its local executor: the point runs in a job process."""
    monkeypatch.setenv("RACO_CACHE", str(tmp_path / "cache"))
    sweep_file = _files(tmp_path)
    sweep = load_sweep_config(sweep_file, {"methods": "weighted_sum", "weights": {"vectors": [[0.5, 0.5]]}})
    results = run_sweep(sweep, Launcher("submitit-local"), say=lambda _: None)
    assert [p["id"] for p in results["points"]] == ["weighted_sum-w0.50-0.50-s0"]
    assert list((tmp_path / "sweep" / "submitit").glob("*_result.pkl"))


def test_report_of_the_sweep(done, tmp_path):
    """raco report reads what raco sweep wrote: every point and method is named, the plots decode."""
    from matplotlib.image import imread

    root, _, _ = done
    results = json.loads((root / "sweep" / RESULTS_JSON).read_text())
    assert main(["report", str(root / "sweep"), "--output", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    markdown = (tmp_path / "report" / "report.md").read_text()
    for point in results["points"]:
        assert point["id"] in html and point["id"] in markdown
    assert "weighted_sum" in markdown and "raco sweep --config" in markdown
    for png in (tmp_path / "report").glob("*.png"):
        assert imread(png).ndim == 3
    assert (tmp_path / "report" / "front.png").is_file()


def test_points_in_parallel_processes(tmp_path, monkeypatch):
    """--parallel 2: two points train at once in separate processes, each a complete run."""
    monkeypatch.setenv("RACO_CACHE", str(tmp_path / "cache"))
    sweep_file = _files(tmp_path)
    flags = [
        "--methods",
        "weighted_sum",
        "--weights",
        "{vectors: [[0.7, 0.3], [0.3, 0.7]]}",
        "--parallel",
        "2",
    ]
    assert main(["sweep", "--config", str(sweep_file), *flags]) == 0
    results = json.loads((tmp_path / "sweep" / RESULTS_JSON).read_text())
    assert [p["id"] for p in results["points"]] == [
        "weighted_sum-w0.70-0.30-s0",
        "weighted_sum-w0.30-0.70-s0",
    ]
    assert all(p["scores"]["chars"] is not None for p in results["points"])


def test_points_asking_for_several_processes_run_under_accelerate_launch(tmp_path):
    """`processes: 2`: a point trains as `accelerate launch --num_processes 2 -m raco train`, its run
    directory resumed with --resume once it exists (on GPUs; here only the command is checked)."""
    from raco.sweep.run import POINTS_DIR, launch_command

    sweep = load_sweep_config(_files(tmp_path), {"processes": "2", "accelerate_config": "fsdp.yaml"})
    assert sweep.processes == 2
    pid = sweep.point_ids()[0]
    command = launch_command(sweep.output_dir, pid, 2, sweep.accelerate_config)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "fsdp.yaml"]
    config = str(sweep.output_dir / POINTS_DIR / f"{pid}.yaml")
    assert command == [*launch, "--num_processes", "2", "-m", "raco", "train", "--config", config]
    (sweep.output_dir / POINTS_DIR / pid).mkdir(parents=True)
    (sweep.output_dir / POINTS_DIR / pid / "config.yaml").write_text("{}")
    assert [*command[:-2], "--resume", str(sweep.output_dir / POINTS_DIR / pid)] == launch_command(
        sweep.output_dir, pid, 2, sweep.accelerate_config
    )
    with pytest.raises(ConfigError, match="processes: at least 1"):
        load_sweep_config(_files(tmp_path), {"processes": "0"})


def test_a_weight_agnostic_method_trains_once_per_seed(tmp_path, monkeypatch, capsys):
    """mgda ignores the weights: one run stands for its three points, and training it at another weight
    vector really does give that run's per-objective numbers and model (checked by training it)."""
    from safetensors.torch import load_file

    from raco.sweep.run import POINTS_DIR, point_tree
    from raco.training.loop import train

    monkeypatch.setenv("RACO_CACHE", str(tmp_path / "cache"))
    sweep_file = _files(tmp_path)
    assert main(["sweep", "--config", str(sweep_file), "--methods", "mgda,weighted_sum"]) == 0
    printed = capsys.readouterr().out
    assert "mgda ignores the objective weights: one run per seed (1) stands for its 3 points" in printed
    assert "6 points from 4 runs" in printed
    folder = tmp_path / "sweep"
    runs = sorted(p.name for p in (folder / POINTS_DIR).iterdir() if p.is_dir())
    assert runs == [
        "mgda-w0.80-0.20-s0",
        *(point_id("weighted_sum", w, 0) for w in [(0.2, 0.8), (0.5, 0.5), (0.8, 0.2)]),
    ]
    results = json.loads((folder / RESULTS_JSON).read_text())
    mgda = [p for p in results["points"] if p["method"] == "mgda"]
    assert [p["weights"]["friendly"] for p in mgda] == [0.8, 0.5, 0.2]
    assert [p.get("trained_as") for p in mgda] == [None, "mgda-w0.80-0.20-s0", "mgda-w0.80-0.20-s0"]
    assert all(p["scores"] == mgda[0]["scores"] and p["run_dir"] == mgda[0]["run_dir"] for p in mgda)
    assert "trained_as" not in results["points"][-1]  # weighted_sum trains every point
    sweep = load_sweep_config(sweep_file, {"methods": "mgda"})
    alone = point_tree(sweep, "mgda", (0.2, 0.8), 0)
    alone["output_dir"] = str(tmp_path / "mgda-alone")
    result = train(alone)
    shared = folder / mgda[0]["run_dir"]
    per_objective = ("friendly/loss", "concise/loss", "friendly/coef", "concise/coef", "grad_norm")
    lines = [
        [r for r in (json.loads(x) for x in (run / "metrics.jsonl").open()) if "friendly/loss" in r]
        for run in (shared, result.run_dir)
    ]
    assert len(lines[0]) == len(lines[1]) == 2
    for a, b in zip(*lines, strict=True):
        assert {k: a[k] for k in per_objective} == {k: b[k] for k in per_objective}
    weights = [load_file(str(run / "model" / "model.safetensors")) for run in (shared, result.run_dir)]
    assert weights[0].keys() == weights[1].keys()
    assert all(weights[0][name].equal(weights[1][name]) for name in weights[0])
