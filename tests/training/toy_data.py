"""A small synthetic two-objective preference file that a tiny model can learn.

Each row has a prompt and two responses made of filler words. Objective ``friendly`` prefers the
response that ends with "thanks"; objective ``concise`` prefers the shorter response. The two agree on
about half of the rows and conflict on the rest, and the features are the same on held-out rows, so the
held-out preference accuracy of each objective can rise above chance. ``tiny_tree`` is the nested
config of a few-step tiny-random run on such files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "quiet",
    "bright",
    "table",
    "window",
    "garden",
    "music",
    "paper",
]
TOPICS = ["the sea", "a city", "your day", "the weather", "a book", "the garden", "a song", "dinner"]


def toy_rows(n: int, seed: int) -> list[dict]:
    """``n`` rows in the pairwise schema (prompt, response_1, response_2, raco_s_* signs)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        short, long = rng.randint(2, 4), rng.randint(6, 9)
        lengths = [short, long] if rng.random() < 0.5 else [long, short]
        friendly = rng.randint(0, 1)  # which response ends with "thanks"
        responses = []
        for position, length in enumerate(lengths):
            words = [rng.choice(WORDS) for _ in range(length)]
            responses.append(" ".join(words + (["thanks"] if position == friendly else [])))
        rows.append(
            {
                "prompt": f"Say something about {rng.choice(TOPICS)}.",
                "response_1": responses[0],
                "response_2": responses[1],
                "raco_s_friendly": 1 if friendly == 0 else -1,
                "raco_s_concise": 1 if lengths[0] < lengths[1] else -1,
            }
        )
    return rows


def with_ties(rows: list[dict], fraction: float, seed: int) -> list[dict]:
    """``rows`` where about ``fraction`` of them have sign 0 (a tie) for one objective (never both), so
    that micro-batches and processes hold different numbers of rows with s ≠ 0."""
    rng = random.Random(seed)
    for row in rows:
        if rng.random() < fraction:
            row[rng.choice(["raco_s_friendly", "raco_s_concise"])] = 0
    return rows


def write_toy(path: Path, n: int, seed: int, ties: float = 0.0) -> Path:
    """Write ``toy_rows(n, seed)`` as JSONL to ``path`` (``ties``: see ``with_ties``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = with_ties(toy_rows(n, seed), ties, seed) if ties else toy_rows(n, seed)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tiny_tree(train_file: Path, eval_file: Path, run_dir: Path, **overrides) -> dict:
    """A nested config for a few-step tiny-random run on the toy files, with dotted overrides."""
    tree = {
        "output_dir": str(run_dir),
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
