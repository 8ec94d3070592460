"""Suite-wide settings: property tests draw the same examples on every run (CI cannot flake on a
new random draw); `HYPOTHESIS_PROFILE=explore` draws fresh examples, for local bug hunting."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_configure(config) -> None:
    """Under pytest-xdist (``make test`` runs two workers on the two cores), each worker and the
    processes its tests start use one torch thread: two workers × two threads on two cores would
    contend (measured 5-8× slower generation on a busy machine)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
