"""raco: reward-free multi-objective preference alignment of language models."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the lazy names below, typed for checkers without importing torch at `import raco`
    from raco.config import RunConfig as RunConfig
    from raco.config import load_config as load_config
    from raco.training.loop import TrainResult as TrainResult
    from raco.training.loop import resume as resume
    from raco.training.loop import train as train

_LAZY = {
    "train": "raco.training.loop",
    "resume": "raco.training.loop",
    "TrainResult": "raco.training.loop",
    "RunConfig": "raco.config",
    "load_config": "raco.config",
}


def __getattr__(name: str) -> Any:
    """Lazy top-level API: ``raco.train(config)`` and ``raco.resume(run_dir)`` (see raco.training.loop)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'raco' has no attribute {name!r}")
