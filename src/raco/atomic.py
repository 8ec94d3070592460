"""Atomic writes: a reader (or a resumed run) sees the old content or the new, never a torn file.

Both helpers build in a temporary sibling (same folder, so same file system) and ``os.replace`` it
into place; a failure leaves the target untouched and removes the temporary. ``tempfile`` creates its
files ``0o600`` and folders ``0o700`` whatever the umask; the results are given the modes an ordinary
``open``/``mkdir`` would have (``0o666``/``0o777`` less the umask; a replaced file keeps its mode).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def current_umask() -> int:
    """The process's umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder: ``0o777`` less the umask."""
    return 0o777 & ~current_umask()


def give_umask_modes(folder: Path) -> None:
    """Give ``folder`` and every file and folder under it (just written by this process) the mode the
    umask says: some writers ignore it (safetensors >= 0.7 writes ``0o600`` files; ``mkdtemp`` 0o700)."""
    files, dirs = file_mode(), dir_mode()
    os.chmod(folder, dirs)
    for root, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            os.chmod(os.path.join(root, name), dirs)
        for name in filenames:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, files)


def make_temp_dir(prefix: str, parent: Path) -> Path:
    """``tempfile.mkdtemp`` in ``parent`` with the mode of an ordinary new folder."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, dir_mode())
    return tmp


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Replace file ``path`` by what ``write(tmp_path)`` writes (its return value is ignored)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save_dir(build: Callable[[Path], object], target: Path) -> Path:
    """Create directory ``target`` by calling ``build(tmp_dir)`` then renaming; safe under races
    (an existing ``target`` is kept: whoever renamed first won)."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.name + ".tmp-", target.parent)
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
