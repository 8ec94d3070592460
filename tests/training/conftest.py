"""Fixtures for the training tests: small toy preference files and tiny-model run configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from toy_data import write_toy

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
        tree = {
            "output_dir": str(tmp_path / "run"),
            "model": {"name": "tiny-random", "reference": "copy"},
            "data": {
                "train": str(train_file),
                "eval": str(eval_file),
                "max_prompt_length": 32,
                "max_length": 64,
            },
            "objectives": [
                {"name": "friendly", "weight": 0.6, "beta": 0.5},
                {"name": "concise", "weight": 0.4, "beta": 0.5},
            ],
            "method": {"name": "raco", "c": 0.4},
            "train": {
                "lr": 3e-3,
                "warmup_ratio": 0.0,
                "max_steps": 4,
                "batch_size": 8,
                "eval_batch_size": 32,
            },
            "log": {"progress": False},
        }
        for key, value in overrides.items():
            node = tree
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return tree

    return make
