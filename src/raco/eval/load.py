"""What ``raco eval`` evaluates, loaded without a run directory, optimizer or engine: :func:`load_target`.

TARGET is one of
* a run directory that ``raco train`` finished (config.yaml, summary.json, model/): the tuned policy,
  its base rebuilt exactly as training loaded it, the run's reference policy and held-out pairs;
* a model folder (``raco export`` output, any transformers folder) — an adapter folder is put on the
  base its ``raco_base_model.json`` (or ``adapter_config.json``) names;
* a Hugging Face id, or raco's offline alias (``smollm2-135m-instruct``).

For a run the *base* is the starting model: LoRA runs evaluate it as the tuned model with its adapters
disabled (no second copy), full runs load the initial weights (which are also the reference).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raco.config import ConfigError, LoraConfig, ModelConfig, RunConfig
from raco.config_tree import build
from raco.export import CONFIG_FILE, MODEL_DIR, ExportError, check_run
from raco.models.loading import load_tokenizer, prepare_base, weights_dtype
from raco.models.reference import NO_REFERENCE, AdapterReference, FrozenReference, Reference

BASE_RECORD = "raco_base_model.json"


class TargetError(ConfigError):
    """TARGET is neither a finished run nor a loadable model; the message is one paragraph."""


@dataclass
class LoadedTarget:
    """A model to evaluate, and what it is compared with.

    ``policy`` is in eval mode on ``device``; ``base()`` is a context in which ``policy`` is replaced by
    the starting model (see :meth:`models`). ``cfg`` and the reference are set for runs only."""

    name: str
    policy: nn.Module
    tokenizer: Any
    cfg: RunConfig | None = None
    reference: Reference = NO_REFERENCE  # the run's π_ref for the tuned policy
    base_policy: nn.Module | None = None  # full runs: the initial weights (LoRA: adapters disabled)

    @property
    def is_run(self) -> bool:
        return self.cfg is not None

    @property
    def logprob_chunk(self) -> int | None:
        """The run's ``model.logprob_chunk`` (log-probs computed that many tokens at a time), or None."""
        return self.cfg.model.logprob_chunk if self.cfg is not None else None

    @contextlib.contextmanager
    def as_model(self, which: str) -> Iterator[tuple[nn.Module, Reference]]:
        """``(model, reference)`` of the ``tuned`` or ``base`` model of a run; the base's reference is
        itself (so its implicit rewards are 0 and its preference accuracy 0.5)."""
        if which == "tuned":
            yield self.policy, self.reference
        elif self.base_policy is not None:
            yield self.base_policy, FrozenReference(self.base_policy, self.logprob_chunk)
        elif hasattr(self.policy, "disable_adapter"):
            with self.policy.disable_adapter():
                yield self.policy, FrozenReference(self.policy, self.logprob_chunk)
        else:
            raise TargetError(f"{self.name}: no starting model is known to compare with")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _ready(model: nn.Module, device: torch.device) -> nn.Module:
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_run(run_dir: str | Path, *, device: str = "auto", with_base: bool = True) -> LoadedTarget:
    """A finished run's tuned policy, tokenizer, reference and starting model. ``with_base=False``
    skips loading the starting model where it would be a second copy (full fine-tuning), at the price
    of no reference (no preference metrics) and no base evaluation."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir = Path(run_dir)
    try:
        tree, _summary, lora = check_run(run_dir)
    except ExportError as err:
        raise TargetError(str(err)) from None
    cfg = build(RunConfig, tree)
    cfg.output_dir = str(run_dir)
    where = _device(device)
    model_dir = run_dir / MODEL_DIR
    tokenizer = _tokenizer(model_dir)
    if lora:
        base = prepare_base(cfg.model, cfg.lora, len(tokenizer))
        policy = _ready(PeftModel.from_pretrained(base, str(model_dir)), where)
        adapters_off = AdapterReference(policy, cfg.model.logprob_chunk)
        return LoadedTarget(str(run_dir), policy, tokenizer, cfg, adapters_off)
    dtype = weights_dtype(cfg.model)  # as training held them: float32 masters unless pure bfloat16
    policy = _ready(AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype), where)
    base_policy = _ready(prepare_base(cfg.model, cfg.lora, len(tokenizer)), where) if with_base else None
    chunk = cfg.model.logprob_chunk
    reference = FrozenReference(base_policy, chunk) if base_policy is not None else NO_REFERENCE
    return LoadedTarget(str(run_dir), policy, tokenizer, cfg, reference, base_policy)


def load_model(name: str, *, device: str = "auto") -> LoadedTarget:
    """A model folder (an adapter folder on its recorded base), a Hugging Face id or raco's alias."""
    from peft import PeftModel

    folder = Path(name).expanduser()
    adapter = folder.is_dir() and (folder / "adapter_config.json").is_file()
    where = _device(device)
    if adapter:
        record = _base_record(folder)
        base_cfg = ModelConfig(
            name=record["name"],
            revision=record.get("revision"),
            gguf_file=record.get("gguf_file"),
            dtype=record.get("dtype") or "float32",
            seed=int(record.get("seed") or 0),  # the built-in tiny-random model's initialisation
        )
        tokenizer = _tokenizer(folder)
        base = prepare_base(base_cfg, LoraConfig(), len(tokenizer))
        policy = _ready(PeftModel.from_pretrained(base, str(folder)), where)
        return LoadedTarget(str(folder), policy, tokenizer)
    model_cfg = ModelConfig(name=str(folder) if folder.is_dir() else name)
    tokenizer = load_tokenizer(model_cfg)
    policy = _ready(prepare_base(model_cfg, LoraConfig(), len(tokenizer)), where)
    return LoadedTarget(name, policy, tokenizer)


def _base_record(folder: Path) -> dict[str, Any]:
    """The base an adapter folder names: raco's record, else peft's ``base_model_name_or_path``."""
    for file, key in ((BASE_RECORD, "name"), ("adapter_config.json", "base_model_name_or_path")):
        path = folder / file
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get(key):
                return data if file == BASE_RECORD else {"name": data[key]}
    raise TargetError(
        f"{folder}: an adapter folder that names no base model ({BASE_RECORD}, adapter_config.json)"
    )


def load_target(target: str | Path, *, device: str = "auto", with_base: bool = True) -> LoadedTarget:
    """A run directory, model folder, Hugging Face id or alias (see the module docstring)."""
    path = Path(target).expanduser()
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return load_run(path, device=device, with_base=with_base)
    if path.is_dir() and not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
        raise TargetError(
            f"{target} is a folder but neither a raco run directory (no {CONFIG_FILE}) nor a model folder "
            "(no config.json or adapter_config.json)"
        )
    return load_model(str(target), device=device)
