"""`raco report`: a real tiny run (trained and judged by raco eval once per module) and hand-made sweep
directories that follow `raco sweep`'s results.json / front.json contract. Checks that every file is
written, every PNG decodes at its stated pixel size, the HTML is self-contained and escaped, the
report names every point and method, and bad targets exit 2 with one paragraph."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread

from raco.cli import main
from raco.sweep import plots
from raco.sweep.report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from toy_data import tiny_tree, write_toy


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 3-step tiny raco run with `raco eval` output (two length objectives) in RUN/eval."""
    from raco.eval.config import load_eval_config
    from raco.eval.runner import evaluate_target
    from raco.training.loop import train

    root = tmp_path_factory.mktemp("report-run")
    files = write_toy(root / "train.jsonl", 48, seed=0), write_toy(root / "eval.jsonl", 16, seed=1)
    result = train(tiny_tree(*files, root / "run", **{"train.max_steps": 3}))
    cfg = load_eval_config(
        None,
        {
            "objectives.short.scorer": "length:unit=characters",
            "objectives.short.direction": "lower",
            "objectives.wordy.scorer": "length:unit=words",
            "objectives.wordy.direction": "higher",
            "generation.max_new_tokens": "4",
            "prompts.max_prompts": "3",
        },
    )
    evaluate_target(result.run_dir, cfg, result.run_dir / "eval", progress=False)
    return Path(result.run_dir)


def _point(pid: str, method: str, weights: dict, seed: int, scores: dict, evals: list[str]) -> dict:
    return {
        "id": pid,
        "method": method,
        "weights": weights,
        "seed": seed,
        "scores": scores,
        "improvements": {e: (None if scores[e] is None else scores[e] - 1.0) for e in evals},
        "preference": {f"{o}/rewards/accuracies": 0.5 + 0.1 * w for o, w in weights.items()},
        "stability": {"skipped_steps": 0, "loss_spikes": 1, "clip_active_rate": 0.25},
        "wall_seconds": 2.5,
        "run_dir": f"points/{pid}",
    }


def make_sweep(root: Path, evals: list[str], run: Path | None, methods=("raco", "weighted_sum")) -> Path:
    """A sweep directory by the contract of `raco sweep`: 2 methods × 3 weight vectors (seed 0), one
    more seed for the first method; point run directories hold a copy of ``run``'s metrics.jsonl."""
    root.mkdir(parents=True)
    objectives = ["friendly", "concise"]
    points = []
    for m, method in enumerate(methods):
        seeds = [0, 1] if m == 0 else [0]
        for w, weight in enumerate((0.2, 0.5, 0.8)):
            for seed in seeds:
                pid = f"{method}-w{w}-s{seed}"
                scores = {e: 1.0 + weight * (i + 1) - 0.1 * m + 0.01 * seed for i, e in enumerate(evals)}
                if w == 0 and m == 1:
                    scores[evals[-1]] = None  # an unscored objective is shown as —, not plotted
                points.append(
                    _point(pid, method, {"friendly": weight, "concise": 1 - weight}, seed, scores, evals)
                )
                if run is not None:
                    (root / "points" / pid).mkdir(parents=True)
                    shutil.copy(run / "metrics.jsonl", root / "points" / pid / "metrics.jsonl")
    results = {
        "objectives": objectives,
        "eval_objectives": evals,
        "directions": {e: ("lower" if i % 2 else "higher") for i, e in enumerate(evals)},
        "base": dict.fromkeys(evals, 1.0),
        "points": points,
        "commands": ["raco sweep --config sweep.yaml"],
    }
    front = {
        "reference_point": dict.fromkeys(evals, 1.0),
        "methods": {
            method: {
                "front": [p["id"] for p in points if p["method"] == method and p["seed"] == 0][:2],
                "hypervolume": {"mean": 0.5 - 0.1 * m, "std": 0.05, "per_seed": {"0": 0.45, "1": 0.55}},
                "weight_faithfulness": {e: 0.8 for e in evals},
                "stability": {"skipped_steps": 0, "loss_spikes": 1, "clip_active_rate": 0.25},
            }
            for m, method in enumerate(methods)
        },
    }
    (root / "sweep.yaml").write_text("methods: [raco, weighted_sum]\n")
    (root / "results.json").write_text(json.dumps(results))
    (root / "front.json").write_text(json.dumps(front))
    return root


def _pixels(path: Path) -> tuple[int, int]:
    image = imread(path)
    return image.shape[1], image.shape[0]


def _check_html_self_contained(html_text: str, folder: Path) -> None:
    sources = re.findall(r'src="([^"]*)"', html_text)
    assert sources, "no images embedded"
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "href=" not in html_text and "<link" not in html_text and "<script" not in html_text
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert embedded == {p.read_bytes() for p in folder.glob("*.png")}


def test_run_report(tiny_run, tmp_path):
    result = write_report(tiny_run, tmp_path / "out")
    assert result.kind == "run"
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"report.md", "report.html", "training.png", "scores.png"}
    assert _pixels(out / "training.png") == plots.TRAINING_PIXELS == (1200, 800)
    assert _pixels(out / "scores.png") == plots.FRONT_2D_PIXELS == (800, 640)
    md, html_text = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (md, html_text):
        for name in ("raco", "friendly", "concise", "short", "wordy", "Win rate"):
            assert name in text
        assert f"raco train --config {tiny_run / 'config.yaml'}" in text
        assert f"raco eval {tiny_run}" in text
    _check_html_self_contained(html_text, out)


def test_run_report_default_output_via_cli(tiny_run, capsys):
    assert main(["report", str(tiny_run)]) == 0
    assert "run report in" in capsys.readouterr().out
    assert (tiny_run / "report" / "report.html").is_file()


def test_sweep_report_names_every_point_and_method(tiny_run, tmp_path):
    sweep = make_sweep(tmp_path / "sweep", ["relevant", "concise_words"], tiny_run)
    result = write_report(sweep)
    out = sweep / "report"
    assert result.kind == "sweep" and result.output == out
    assert _pixels(out / "front.png") == plots.front_pixels(2) == (800, 640)
    assert _pixels(out / "hypervolume.png") == plots.HYPERVOLUME_PIXELS == (720, 480)
    points = json.loads((sweep / "results.json").read_text())["points"]
    for point in points:
        assert _pixels(out / f"training-{point['id']}.png") == plots.TRAINING_PIXELS
    md, html_text = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (md, html_text):
        for point in points:
            assert point["id"] in text
        for word in ("raco", "weighted_sum", "raco sweep --config sweep.yaml", "Spearman", "reference point"):
            assert word in text
    assert "0.5 ± 0.05" in md and "friendly=0.2, concise=0.8" in md
    _check_html_self_contained(html_text, out)


def test_sweep_report_three_objectives_pairwise_panels(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", ["a", "b", "c"], run=None)
    result = write_report(sweep, tmp_path / "out")
    assert plots.front_pixels(3) == (1440, 420) and plots.front_pixels(4) == (1440, 840)
    assert _pixels(tmp_path / "out" / "front.png") == (1440, 420)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "No metrics.jsonl" in md  # points without a run directory: said, not failed
    assert sorted(p.name for p in result.files if p.suffix == ".png") == ["front.png", "hypervolume.png"]


def test_html_escapes_user_strings(tmp_path):
    evil = "<script>alert('x')</script>"
    sweep = make_sweep(tmp_path / "sweep", ["x&y", "b"], run=None, methods=(evil, "raco"))
    write_report(sweep)
    html_text = (sweep / "report" / "report.html").read_text()
    assert evil not in html_text and "x&y" not in html_text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html_text and "x&amp;y" in html_text


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, "is not a directory"),
        ({}, "neither a raco run nor a raco sweep"),
        ({"config.yaml": "a: 1\n"}, "not a finished run"),
        ({"results.json": "{not json"}, "cannot read"),
        ({"results.json": "{}"}, "lacks points"),
        ({"config.yaml": "a: 1\n", "summary.json": "{}"}, "lacks objectives"),
        ({"config.yaml": "a: [\n", "summary.json": "{}"}, "cannot read"),
    ],
)
def test_bad_targets_exit_2(tmp_path, capsys, files, message):
    target = tmp_path / "target"
    if files is not None:
        target.mkdir()
        for name, text in files.items():
            (target / name).write_text(text)
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raco report: error:") and message in err
    assert "Traceback" not in err and err.count("\n") == 1
