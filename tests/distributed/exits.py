"""How the distributed test workers leave once their work is done."""

from __future__ import annotations

import os
import sys


def exit_now() -> None:
    """Leave without the interpreter's teardown: after the process group is destroyed and every
    output written, a gloo/FSDP2 thread still joinable at teardown sometimes aborts the process
    ("terminate called without an active exception", about 1 launch in 6 here), failing a run whose
    work is complete."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
