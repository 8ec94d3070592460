"""raco's embedded demo preference data: prompts written for the project, answered by
SmolLM2-135M-Instruct, labelled by ``raco eval``'s scorers on three objectives (``relevant``,
``concise``, ``covers``).

``train.jsonl`` and ``eval.jsonl`` (held-out prompts) are in raco's pairwise layout; ``DATASHEET.md``
says how they were made (``scripts/build_demo_data.py``) and gives their sizes, sign counts and
conflict rates. Load them like any data file::

    from raco.data import DataSpec, load_preference_data
    from raco.demo_data import path

    train = load_preference_data(DataSpec(str(path("train"))))
"""

from __future__ import annotations

from importlib.resources import as_file
from importlib.resources import files as _files
from importlib.resources.abc import Traversable
from pathlib import Path

SPLITS = ("train", "eval")
DATASHEET = "DATASHEET.md"


def files() -> dict[str, Traversable]:
    """The shipped data files by name: ``train``, ``eval`` (JSON Lines) and ``datasheet``."""
    root = _files(__name__)
    return {**{split: root / f"{split}.jsonl" for split in SPLITS}, "datasheet": root / DATASHEET}


def path(split: str = "train") -> Path:
    """A filesystem path of one shipped file: ``train``, ``eval`` or ``datasheet``.

    The package is installed as files (a wheel or an editable install), so the path stays valid; a
    zipped install would need :func:`importlib.resources.as_file` around :func:`files` instead.
    """
    available = files()
    if split not in available:
        raise ValueError(f"demo data: no file {split!r}; the files are {', '.join(available)}")
    with as_file(available[split]) as found:
        return Path(found)
