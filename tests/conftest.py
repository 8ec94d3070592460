"""Suite-wide settings: property tests draw the same examples on every run (CI cannot flake on a
new random draw); `HYPOTHESIS_PROFILE=explore` draws fresh examples, for local bug hunting."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
