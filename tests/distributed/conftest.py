"""Distributed tests (torchrun, gloo on CPU): the engine's and the training tests' helpers on the path."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for folder in ("engine", "training"):
    sys.path.insert(0, str(TESTS / folder))
