"""Fixtures for the training tests: small toy preference files and tiny-model run configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from toy_data import tiny_tree, write_toy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory) -> tuple[Path, Path]:
    """(train.jsonl with 96 rows, eval.jsonl with 32 rows) of the toy friendly/concise task."""
    root = tmp_path_factory.mktemp("toy")
    return write_toy(root / "train.jsonl", 96, seed=0), write_toy(root / "eval.jsonl", 32, seed=1)


@pytest.fixture
def tiny_config(toy_files, tmp_path):
    """A function building a nested config for a few-step tiny-random run, with dotted overrides."""
    train_file, eval_file = toy_files

    def make(**overrides) -> dict:
        return tiny_tree(train_file, eval_file, tmp_path / "run", **overrides)

    return make
