"""Every command of the README works, in README order, on a fresh copy of the checkout.

The README's ```bash and ```python blocks, and the `raco ...` commands written inline in its text, are
run exactly as written, one after the other, in a temporary folder holding a copy of what a clone has
at the top (`configs/`, `tests/assets/`, the Makefile and the dependency spec, mtimes kept) and the
checkout's `.venv` (so `.venv/bin/raco` is the checkout's raco). Training runs are shortened by the
documented `RACO_OVERRIDES` (2 optimizer steps, 8 held-out rows), and `make demo` also by its
`DEMO_ARGS` (2 held-out prompts, 8 new tokens): every command still loads its model and data, trains,
evaluates, checkpoints and saves, so each is checked end to end, in minutes instead of the tens of
minutes the full runs take on 2 CPU cores. `make test` is the command running this test (CI runs it).

The GPU launch lines (```text blocks) cannot run here: every file they name must exist and load (raco
configs as raco reads them, accelerate configs as accelerate reads them) and the module they start must
accept their flags.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHORTEN = "train.max_steps=2 data.max_eval_rows=8"
DEMO_ARGS = "--eval.prompts.max_prompts 2 --eval.generation.max_new_tokens 8"
COPIED = ("configs", "tests/assets", "Makefile", "pyproject.toml", "constraints.txt")
NOT_RUN = {"make test": "the command running this test"}


def venv_is_current() -> bool:
    """Whether the checkout's .venv was made from the current dependency spec (the Makefile's stamp)."""
    spec = hashlib.sha256(b"".join((REPO / f).read_bytes() for f in ("pyproject.toml", "constraints.txt")))
    return (REPO / ".venv" / f".deps-{spec.hexdigest()[:16]}").exists()


def clone_top_level(folder: Path, names: tuple[str, ...]) -> None:
    """Copy ``names`` of the checkout into ``folder`` with their mtimes (so the copied Makefile finds the
    .venv up to date) and link the checkout's .venv there."""
    for name in names:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        copy(REPO / name, folder / name)
    (folder / ".venv").symlink_to(REPO / ".venv")


LAUNCHES = ("accelerate launch ",)


def readme_commands(text: str) -> list[tuple[str, str]]:
    """``(kind, code)`` in README order: ``bash`` (one command, continuation lines joined, comments
    dropped), ``python`` (a whole block), ``inline`` (a `raco ...` command written in the text) and
    ``launch`` (an `accelerate launch` line of a ```text block: for GPU machines, not run)."""
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
            elif fence[1] == "text":
                joined = "\n".join(body).replace("\\\n", " ")
                out += [("launch", c.strip()) for c in joined.splitlines() if c.startswith(LAUNCHES)]
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
    assert ".venv/bin/raco data inspect raco-demo" in codes
    assert any(c.startswith(".venv/bin/raco train --config configs/cpu/smollm2-lora.yaml ") for c in codes)
    assert any("raco.train(" in c for c in codes)
    assert codes[:2] == ["make demo", "make test"]  # the two commands come first
    assert kinds.count("launch") >= 2


def test_readme_gpu_launch_lines_name_real_files():
    """Each GPU launch line: its accelerate config loads with accelerate's own reader, its raco config
    with raco's, and the module it starts exists and reads the flags it is given."""
    from accelerate.commands.config.config_args import load_config_from_file

    from raco.config import load_config
    from raco.training.cli_train import parse_train_args

    launches = [code for kind, code in readme_commands(README.read_text()) if kind == "launch"]
    for line in launches:
        argv = shlex.split(line)
        assert argv[:2] == ["accelerate", "launch"], line
        config_file = argv[argv.index("--config_file") + 1]
        assert load_config_from_file(str(REPO / config_file)).distributed_type, line
        module = argv.index("-m")
        assert argv[module + 1] == "raco.training.cli_train", line
        assert importlib.util.find_spec(argv[module + 1]) is not None
        namespace, overrides = parse_train_args(argv[module + 2 :])
        assert overrides == {} and Path(namespace.config).suffix == ".yaml", line
        assert load_config(REPO / namespace.config).output_dir, line


def _run(kind: str, code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    python = str(cwd / ".venv" / "bin" / "python")
    argv = [python, "-c", code] if kind == "python" else ["bash", "-c", code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_readme_runs_in_order(tmp_path):
    venv = REPO / ".venv"
    if not (venv / "bin" / "raco").exists():
        pytest.skip("no .venv with raco in the checkout (run `make venv`)")
    if not venv_is_current():  # `make demo` would rebuild it in place
        pytest.skip("the .venv predates the dependency spec (run `make venv`; `make test` does)")
    clone_top_level(tmp_path, COPIED)
    env = {
        **os.environ,
        "RACO_OVERRIDES": SHORTEN,
        "DEMO_ARGS": DEMO_ARGS,
        "PATH": f"{tmp_path / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": "",
    }
    for kind, code in readme_commands(README.read_text()):
        if kind == "launch" or code in NOT_RUN:
            continue  # checked by the test above / see NOT_RUN
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
    for sweep in ("demo", "tiny"):  # `make demo` and the README's own sweep: trained, judged, reported
        results = json.loads((tmp_path / "sweeps" / sweep / "results.json").read_text())
        assert [p["method"] for p in results["points"]] == ["raco", "weighted_sum"], sweep
        assert (tmp_path / "sweeps" / sweep / "report" / "front.png").is_file(), sweep
        assert (tmp_path / "sweeps" / sweep / "report" / "report.html").is_file(), sweep
