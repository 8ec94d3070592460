"""Atomic writes: a reader (or a resumed run) sees the old content or the new, never a torn file.

Both helpers build in a temporary sibling (same folder, so same file system) and ``os.replace`` it
into place; a failure leaves the target untouched and removes the temporary.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Replace file ``path`` by what ``write(tmp_path)`` writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save_dir(build: Callable[[Path], None], target: Path) -> Path:
    """Create directory ``target`` by calling ``build(tmp_dir)`` then renaming; safe under races
    (an existing ``target`` is kept: whoever renamed first won)."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
