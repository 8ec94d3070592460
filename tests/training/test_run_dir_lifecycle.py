"""The run directory's lifecycle: a run killed at any moment and resumed any number of times ends with
exactly the files and metrics of the uninterrupted run; resuming a finished run changes nothing; the
wall time covers every segment; a killed checkpoint write leaves nothing behind once resumed; files
get the modes the umask says.

The kills are real (SIGKILL, in a subprocess), at the points named by ``RACO_TEST_KILL_AT``
(``raco.training.checkpoint.fault_point``)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from raco.training import checkpoint as ckpt
from raco.training.cli_train import main
from raco.training.loop import resume, train
from raco.training.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
WALL_CLOCK = {"tokens_per_second", "wall_seconds"}
# where the two runs legitimately differ: their own paths, and how long they took
PATHS = {"run_dir", "model_dir", "output_dir"}

SETTINGS = {
    "train.max_steps": 5,
    "train.save_every": 2,
    "train.eval_every": 2,
    "train.keep_last": 2,
    "train.batch_size": 4,
    "train.warmup_ratio": 0.2,
    # the runs' evaluations are compared with each other, not with a target: 8 held-out rows are
    # enough, and each evaluation of the 32-row file costs as much as a few training steps
    "data.max_eval_rows": 8,
}


def _raco(args: list[str], kill_at: str | None) -> subprocess.CompletedProcess:
    """`python -m raco ...` in a subprocess, killed at ``kill_at`` (see checkpoint.fault_point)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop(ckpt.FAULT_ENV, None)
    if kill_at:
        env[ckpt.FAULT_ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "raco", *args], env=env, capture_output=True, text=True, timeout=600
    )


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")}


def _without(value, drop: set[str]):
    """``value`` without the keys in ``drop``, at any depth."""
    if isinstance(value, dict):
        return {k: _without(v, drop) for k, v in value.items() if k not in drop}
    return value


def _lines(run_dir: Path) -> list[dict]:
    return [_without(r, WALL_CLOCK) for r in read_metrics(run_dir)]


def _killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def test_killed_anywhere_and_resumed_ends_as_the_uninterrupted_run(tiny_config, tmp_path):
    """One run killed three times — after step 1 before any checkpoint, in the middle of writing its
    second checkpoint, and after its final checkpoint before model/ — and resumed after each: every
    step's metrics once, one final evaluation, the same files, checkpoints, model and summary."""
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(tiny_config(**SETTINGS, output_dir=str(tmp_path / "killed"))))
    run_dir = tmp_path / "killed"

    _killed(_raco(["train", "--config", str(config)], "before-first-checkpoint"))
    assert ckpt.list_checkpoints(run_dir) == []
    assert [r["step"] for r in read_metrics(run_dir)] == [1]  # logged, then lost with the process

    # starts over (the step-1 line must go), writes step 2, is killed writing step 4
    _killed(_raco(["train", "--resume", str(run_dir)], "mid-checkpoint-write@2"))
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-00000002"]
    (debris,) = (run_dir / ckpt.CHECKPOINTS).glob(".tmp-step-00000004-*")
    assert 0 < len(list(debris.iterdir())) < 5  # half a checkpoint
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]

    _killed(_raco(["train", "--resume", str(run_dir)], "after-last-checkpoint-before-model"))
    assert not debris.exists()  # removed on resume
    assert ckpt.latest_checkpoint(run_dir).name == "step-00000005"
    assert not (run_dir / "model").exists() and not (run_dir / "summary.json").exists()

    resumed = resume(run_dir)  # in-process: only model/ and summary.json were missing
    assert resumed.steps == 5 and not resumed.already_complete

    straight = train(tiny_config(**SETTINGS, output_dir=str(tmp_path / "straight")))
    other = straight.run_dir

    assert _files(run_dir) == _files(other)
    assert [r["step"] for r in read_metrics(other)] == [1, 2, 3, 4, 5, 5]  # the last: final eval
    assert _lines(run_dir) == _lines(other)
    summary_a = json.loads((run_dir / "summary.json").read_text())
    summary_b = json.loads((other / "summary.json").read_text())
    assert _without(summary_a, WALL_CLOCK | PATHS) == _without(summary_b, WALL_CLOCK | PATHS)
    assert resumed.final_metrics.keys() == straight.final_metrics.keys()
    for name in (
        "model/model.safetensors",
        *(f"checkpoints/step-0000000{s}/trainable.safetensors" for s in (4, 5)),
    ):
        a, b = load_file(str(run_dir / name)), load_file(str(other / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for step in (4, 5):
        state = f"checkpoints/step-0000000{step}/state.json"
        a, b = (json.loads((d / state).read_text()) for d in (run_dir, other))
        assert _without(a, WALL_CLOCK) == _without(b, WALL_CLOCK), step

    # files and folders have the modes the umask gives (tempfile would make them 0600/0700)
    umask = os.umask(0o022)
    os.umask(umask)
    for path in [run_dir, *run_dir.rglob("*")]:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def _snapshot(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def test_wall_time_covers_every_segment_and_a_finished_run_is_left_alone(tiny_config, monkeypatch, capsys):
    """Segment 1 takes (on a shifted clock) 1000 s and is interrupted at step 2; the resumed run's
    summary counts them. Resuming the finished run then exits 0, says so, and changes no byte (no
    second final evaluation, no new model or summary); under torchrun only rank 0 says it."""
    import raco.training.loop as loop

    real_time = loop.time.time
    shift = {"seconds": 0.0}

    class Clock:
        perf_counter = staticmethod(loop.time.perf_counter)

        @staticmethod
        def time() -> float:
            return real_time() + shift["seconds"]

    monkeypatch.setattr(loop, "time", Clock)

    def slow_then_interrupted(step, metrics):
        if step == 1:
            shift["seconds"] += 1000.0
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    tree = tiny_config(**{"train.max_steps": 3, "train.eval_every": 2})
    with pytest.raises(KeyboardInterrupt):
        train(tree, on_step=slow_then_interrupted)
    run_dir = Path(tree["output_dir"])
    state = json.loads((ckpt.latest_checkpoint(run_dir) / "state.json").read_text())
    assert state["step"] == 2 and state["wall_seconds"] >= 1000.0

    result = resume(run_dir)
    summary = json.loads(result.summary_file.read_text())
    assert 1000.0 <= summary["wall_seconds"] < 2000.0
    assert summary["final_metrics"].keys() == result.final_metrics.keys()
    assert "friendly/loss" in summary["final_metrics"]  # the training metrics, not only the final eval
    capsys.readouterr()

    before = _snapshot(run_dir)
    assert main(["--resume", str(run_dir), "--train.keep_last", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{run_dir} is already complete (3 steps" in out and "nothing changed" in out
    again = resume(run_dir)
    assert again.already_complete and again.final_metrics == summary["final_metrics"]
    monkeypatch.setenv("RANK", "1")
    assert main(["--resume", str(run_dir)]) == 0
    assert capsys.readouterr().out == ""  # one line per launch, from rank 0
    assert _snapshot(run_dir) == before
    evals = [r for r in read_metrics(run_dir) if "eval/weighted_accuracy" in r]
    assert [r["step"] for r in evals] == [2, 3]


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    """What a killed writer leaves — an unfinished checkpoint folder, an atomic_write temporary, a
    checkpoint set aside while the same step was rewritten — is cleaned; look-alike user files stay."""
    ckpt.write_checkpoint(tmp_path, 2, _tiny_files(2), keep_last=3)
    root = tmp_path / ckpt.CHECKPOINTS
    stale = [root / ".tmp-step-00000004-k2j_9xq1", tmp_path / ".metrics.jsonl.a8d7f6g5.tmp"]
    stale[0].mkdir()
    (stale[0] / "trainable.safetensors").write_bytes(b"x" * 1000)
    stale[1].write_text('{"step": 1}\n')
    kept = [
        root / ".tmp-step-mine",
        root / "notes",
        tmp_path / ".notes.a8d7f6g5.tmp",
        tmp_path / "metrics.jsonl.tmp",
        tmp_path / "config.yaml",
    ]
    for path in kept:
        path.write_text("user's")
    # the step-6 checkpoint was set aside and its replacement never arrived: it is put back
    ckpt.write_checkpoint(tmp_path, 6, _tiny_files(6), keep_last=3)
    os.replace(root / "step-00000006", root / ".old-step-00000006-0a1b2c3d")

    removed = ckpt.remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert all(p.read_text() == "user's" for p in kept)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000006"]


def test_rewriting_a_checkpoint_keeps_the_old_one_until_the_new_one_is_in(tmp_path):
    ckpt.write_checkpoint(tmp_path, 2, _tiny_files(2), keep_last=3)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.write_checkpoint(tmp_path, 2, {**_tiny_files(3), "optimizer.pt": Unpicklable()}, keep_last=3)
    assert [p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir()] == ["step-00000002"]
    ckpt.write_checkpoint(tmp_path, 2, _tiny_files(3), keep_last=3)
    assert [p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir()] == ["step-00000002"]
    assert ckpt.read_checkpoint(ckpt.latest_checkpoint(tmp_path))["state"]["step"] == 3


def _tiny_files(value: int) -> dict:
    return {
        "trainable.safetensors": {"w": torch.full((2,), float(value))},
        "optimizer.pt": {"optimizer": {}, "scheduler": {}},
        "rng-0.pt": ckpt.rng_state(),
        "state.json": {"step": value, "processes": 1},
        "config.yaml": "a: 1\n",
    }


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_and_checkpoints_respect_the_umask(tmp_path, umask):
    from raco.atomic import atomic_save_dir, atomic_write

    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("a"))
        atomic_save_dir(lambda tmp: (tmp / "f").write_text("f"), tmp_path / "folder")
        ckpt.write_checkpoint(tmp_path, 2, _tiny_files(2), keep_last=1)
        (tmp_path / "kept.txt").write_text("k")
        os.chmod(tmp_path / "kept.txt", 0o600)
        atomic_write(tmp_path / "kept.txt", lambda tmp: tmp.write_text("new"))  # keeps its mode
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "a.txt") == 0o666 & ~umask
    assert mode(tmp_path / "folder") == 0o777 & ~umask
    assert mode(tmp_path / "checkpoints" / "step-00000002") == 0o777 & ~umask
    assert mode(tmp_path / "checkpoints" / "step-00000002" / "state.json") == 0o666 & ~umask
    assert mode(tmp_path / "kept.txt") == 0o600


def test_a_run_directory_in_use_is_neither_cleaned_nor_replaced(tiny_config, tmp_path):
    """While a run holds its directory (RUN_DIR/.raco.lock), `--resume` and `overwrite: true` are
    refused before they touch it: its in-progress checkpoint folder is not taken for debris."""
    from raco.config import ConfigError, from_dict, save_config

    tree = tiny_config(**{"train.max_steps": 2})
    run_dir = Path(tree["output_dir"])
    run_dir.mkdir()
    save_config(from_dict(tree), run_dir / "config.yaml")
    writing = run_dir / ckpt.CHECKPOINTS / ".tmp-step-00000002-abcd1234"
    writing.mkdir(parents=True)
    held = ckpt.lock_run_dir(run_dir)
    try:
        with pytest.raises(ConfigError, match=rf"in use by another raco process \(pid {os.getpid()} on "):
            resume(run_dir)
        with pytest.raises(ConfigError, match="in use by another raco process"):
            train({**tree, "overwrite": True})
    finally:
        held.close()
    assert writing.is_dir() and (run_dir / "config.yaml").is_file()
