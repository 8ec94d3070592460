"""Load a benchmark script (``benchmarks/<stem>.py``, not a package) as a module for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(stem: str) -> ModuleType:
    """``benchmarks/<stem>.py`` executed as the module ``<stem>_bench`` (registered in ``sys.modules``
    first: dataclasses look their module up while the file executes)."""
    spec = importlib.util.spec_from_file_location(f"{stem}_bench", BENCHMARKS / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
