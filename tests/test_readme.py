"""Every command of the README works, in README order, on a fresh copy of the checkout's configs.

The README's ```bash and ```python blocks, and the `raco ...` commands written inline in its text, are
run exactly as written, one after the other, in a temporary folder holding a copy of `configs/` and
the checkout's `.venv` (so `.venv/bin/raco` is the checkout's raco). Training runs are shortened by the
documented `RACO_OVERRIDES` (2 optimizer steps, 8 held-out rows): every command still loads its model
and data, trains, evaluates, checkpoints and saves, so each is checked end to end, in minutes instead
of the tens of minutes the full runs take on 2 CPU cores.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHORTEN = "train.max_steps=2 data.max_eval_rows=8"


def readme_commands(text: str) -> list[tuple[str, str]]:
    """``(kind, code)`` in README order: ``bash`` (one command, continuation lines joined, comments
    dropped), ``python`` (a whole block) and ``inline`` (a `raco ...` command written in the text)."""
    out: list[tuple[str, str]] = []
    lines = iter(text.splitlines())
    for line in lines:
        fence = re.match(r"^```(\w+)\s*$", line)
        if fence:
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            if fence[1] == "python":
                out.append(("python", "\n".join(body)))
            elif fence[1] in ("bash", "sh", "shell"):
                joined = "\n".join(body).replace("\\\n", " ")
                out += [
                    ("bash", cmd.strip())
                    for cmd in joined.splitlines()
                    if cmd.strip() and not cmd.lstrip().startswith("#")
                ]
            continue
        out += [("inline", span) for span in re.findall(r"`(raco [^`]+)`", line)]
    return out


def test_readme_commands_are_found():
    """The extraction sees what a reader sees (so the run below cannot pass by finding nothing)."""
    commands = readme_commands(README.read_text())
    kinds = [kind for kind, _ in commands]
    assert kinds.count("bash") >= 4 and kinds.count("python") >= 2
    codes = [code for _, code in commands]
    assert ".venv/bin/raco data inspect configs/data/toy_train.jsonl" in codes
    assert any(c.startswith(".venv/bin/raco train --config configs/cpu/smollm2-lora.yaml ") for c in codes)
    assert any("raco.train(" in c for c in codes)


def _run(kind: str, code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    python = str(cwd / ".venv" / "bin" / "python")
    argv = [python, "-c", code] if kind == "python" else ["bash", "-c", code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_readme_runs_in_order(tmp_path):
    venv = REPO / ".venv"
    if not (venv / "bin" / "raco").exists():
        pytest.skip("no .venv with raco in the checkout (run `make venv`)")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / ".venv").symlink_to(venv)
    env = {
        **os.environ,
        "RACO_OVERRIDES": SHORTEN,
        "PATH": f"{tmp_path / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": "",
    }
    for kind, code in readme_commands(README.read_text()):
        started = time.perf_counter()
        done = _run(kind, code, tmp_path, env)
        report = (
            f"README {kind} command failed (exit {done.returncode}):\n{code}\n{done.stdout}\n{done.stderr}"
        )
        assert done.returncode == 0, report
        assert "Traceback" not in done.stderr, report
        if "raco train --config" in code or "raco.train(" in code:
            assert f"RACO_OVERRIDES sets {SHORTEN}" in done.stderr, report  # shortened, and says so
        sys.stdout.write(f"ok ({time.perf_counter() - started:.0f} s): {code.splitlines()[0]}\n")
    for run in ("tiny-random", "smollm2-80-20", "tiny-random-weighted-sum"):
        assert (tmp_path / "runs" / run / "model").is_dir(), run
        assert (tmp_path / "runs" / run / "summary.json").is_file(), run
