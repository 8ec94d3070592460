"""A small synthetic two-objective preference file that a tiny model can learn.

Each row has a prompt and two responses made of filler words. Objective ``friendly`` prefers the
response that ends with "thanks"; objective ``concise`` prefers the shorter response. The two agree on
about half of the rows and conflict on the rest, and the features are the same on held-out rows, so the
held-out preference accuracy of each objective can rise above chance.
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


def write_toy(path: Path, n: int, seed: int) -> Path:
    """Write ``toy_rows(n, seed)`` as JSONL to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in toy_rows(n, seed)))
    return path
