"""Fixtures of the data tests: the asset folder, a JSONL writer, offline tokenizers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "data"


@pytest.fixture(scope="session")
def assets() -> Path:
    """Folder of the small data files in the real datasets' schemas."""
    return ASSETS


@pytest.fixture
def write_jsonl(tmp_path: Path):
    """Write rows (dicts, or raw strings for malformed lines) to a JSONL file; return its path."""

    def write(rows, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def gpt2():
    """GPT-2's tokenizer (no chat template, pad = eos = 50256)."""
    from raco.models.offline import gpt2_tokenizer

    return gpt2_tokenizer()


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct's tokenizer (ChatML template, pad = eos = <|im_end|> = 2)."""
    from raco.models.offline import smollm2_tokenizer

    return smollm2_tokenizer()
