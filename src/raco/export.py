"""``raco export RUN_DIR --output DIR [--merge]``: a finished run's model as a folder others can use.

What DIR holds (always safetensors weights, the tokenizer, the model card ``README.md`` and
``raco_base_model.json``, the portable description of the base):

* a LoRA run with ``--merge``: the adapter merged into its base — a plain transformers model that
  ``AutoModelForCausalLM.from_pretrained(DIR)`` loads without raco or peft. The base is rebuilt exactly
  as training loaded it (:func:`raco.models.loading.prepare_base` on the run's ``config.yaml``); a
  QLoRA run's base is loaded unquantised in ``model.dtype`` for the merge;
* a LoRA run without ``--merge``: the adapter, its ``adapter_config.json`` naming the portable base
  (the Hugging Face id, or raco's alias for ``tiny-random``) — peft, or transformers with peft
  installed, loads it on top of that base;
* a full fine-tuning run (``--merge`` changes nothing): a copy of the run's model with
  ``use_cache`` on and the tokenizer's end-of-sequence token in its generation config.

Full and merged models are written in the dtype the run asked for (``raco.models.loading.saved_dtype``):
a ``model.dtype: bfloat16`` run trains float32 master weights and exports them rounded once to bfloat16,
the dtype the paper's models ship in (half the size); float32 and float16 (mixed) runs export float32.
An adapter is copied as trained.

An existing non-empty DIR is refused unless ``--overwrite``; the folder is built beside DIR and
renamed into place, so a failed export leaves no half-written DIR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from raco.atomic import give_umask_modes

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
MODEL_DIR = "model"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SKIPPED_FILES = ("README.md",)  # rewritten, never copied


class ExportError(ValueError):
    """RUN_DIR is not a finished run, or DIR cannot be written; the message is one paragraph."""


@dataclass
class ExportResult:
    """What was written."""

    output: Path
    kind: str  # adapter, full or merged
    base: dict[str, Any]  # the portable base record
    seconds: float
    bytes: int


def _is_full_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def check_run(run_dir: Path) -> tuple[dict, dict, bool]:
    """(config tree, summary, is LoRA) of a finished run, or :class:`ExportError` saying why not."""
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} is not a directory; give the run directory that `raco train` wrote")
    config_file = run_dir / CONFIG_FILE
    if not config_file.is_file():
        raise ExportError(
            f"{run_dir} is not a raco run directory: it has no {CONFIG_FILE}. Give the folder `raco train` "
            "wrote (its `output_dir`), which holds config.yaml, summary.json and model/."
        )
    model_dir = run_dir / MODEL_DIR
    if not (run_dir / SUMMARY_FILE).is_file() or not model_dir.is_dir():
        steps = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
        where = f" (its newest checkpoint is {steps[-1]})" if steps else ""
        raise ExportError(
            f"{run_dir} is not a finished run: it has no {SUMMARY_FILE} or no {MODEL_DIR}/ folder{where}. "
            f"Training writes both when it ends; finish it with `raco train --resume {run_dir}` and export "
            "afterwards."
        )
    try:
        tree = yaml.safe_load(config_file.read_text())
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as err:
        raise ExportError(f"cannot read the run in {run_dir}: {err}") from err
    lora = bool((tree.get("lora") or {}).get("enabled"))
    complete = (model_dir / ADAPTER_WEIGHTS).is_file() if lora else _is_full_model(model_dir)
    if not complete:
        expected = ADAPTER_WEIGHTS if lora else "config.json and *.safetensors weights"
        raise ExportError(
            f"{model_dir} is incomplete: it lacks {expected}, which training writes at its end (a run "
            f"stopped while saving?). Re-run the end of training with `raco train --resume {run_dir}`."
        )
    return tree, summary, lora


def _check_output(output: Path, run_dir: Path, overwrite: bool) -> None:
    resolved, source = output.resolve(), run_dir.resolve()
    model = source / MODEL_DIR
    if resolved in (source, model) or resolved in source.parents or model in resolved.parents:
        raise ExportError(
            f"--output {output} would overwrite the run or write inside its {MODEL_DIR}/ folder; choose a "
            "folder outside them"
        )
    if output.exists() and not output.is_dir():
        raise ExportError(f"--output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ExportError(
            f"--output {output} exists and is not empty; choose another folder, or add --overwrite to "
            "replace it"
        )


def _copy_files(source: Path, target: Path, skip: tuple[str, ...] = ()) -> None:
    for path in sorted(source.iterdir()):
        if path.name in SKIPPED_FILES or path.name in skip:
            continue
        if path.is_dir():
            shutil.copytree(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)


def _generation_ready(folder: Path, tokenizer) -> None:
    """``use_cache`` on (training may have turned it off for checkpointing) and the tokenizer's
    end-of-sequence and padding tokens in the generation config where the model names none."""
    from transformers import AutoConfig, GenerationConfig

    config = AutoConfig.from_pretrained(folder)
    if getattr(config, "use_cache", True) is False:
        config.use_cache = True
        config.save_pretrained(folder)
    try:
        generation = GenerationConfig.from_pretrained(folder)
    except OSError:
        generation = GenerationConfig.from_model_config(config)
    if generation.eos_token_id is None and tokenizer.eos_token_id is not None:
        generation.eos_token_id = tokenizer.eos_token_id
    if generation.pad_token_id is None and tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id
    generation.use_cache = True
    generation.save_pretrained(folder)


def _merged(cfg, model_dir: Path, tokenizer):
    """The run's adapter merged into its base, the base rebuilt as training built it."""
    import torch
    from peft import PeftModel

    from raco.models.loading import prepare_base, saved_dtype

    lora = replace(cfg.lora, load_in_4bit=False)  # merge into unquantised weights
    base = prepare_base(cfg.model, lora, len(tokenizer))
    with torch.no_grad():
        model = PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()
    model.eval()
    return model.to(saved_dtype(cfg.model))  # merged in the training dtype, rounded once


def _stored_dtype(folder: Path) -> str | None:
    """The weights' dtype a saved transformers model declares (``dtype``, or ``torch_dtype`` before
    transformers 5), e.g. ``"float32"``."""
    config = json.loads((folder / "config.json").read_text())
    return config.get("dtype") or config.get("torch_dtype")


def _copy_full_model(cfg, model_dir: Path, tmp: Path) -> None:
    """The run's full model into ``tmp``, its weights in the run's saved dtype (float32 master weights
    of a bfloat16 run are rewritten in bfloat16; weights already in that dtype are copied as they are)."""
    import torch
    from transformers import AutoModelForCausalLM

    from raco.models.loading import saved_dtype

    target = saved_dtype(cfg.model)
    if _stored_dtype(model_dir) == str(target).removeprefix("torch."):
        _copy_files(model_dir, tmp)
        return
    weights = ("config.json", "model.safetensors.index.json")
    _copy_files(model_dir, tmp, skip=weights + tuple(p.name for p in model_dir.glob("*.safetensors")))
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=target)
    model.save_pretrained(tmp, safe_serialization=True)


def _write(tmp: Path, cfg, summary: dict, model_dir: Path, lora: bool, merge: bool) -> tuple[str, dict]:
    from transformers import AutoTokenizer

    from raco.models.card import ADAPTER, FULL, MERGED, write_model_card
    from raco.models.portable import base_model_record, make_adapter_config_portable, write_base_record

    base = {k: v for k, v in (summary.get("base_model") or {}).items() if k != "local_path"}
    base = base or base_model_record(cfg.model)  # runs from before raco recorded it
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if lora and merge:
        kind = MERGED
        _merged(cfg, model_dir, tokenizer).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _generation_ready(tmp, tokenizer)
    elif lora:
        kind = ADAPTER
        _copy_files(model_dir, tmp)
        make_adapter_config_portable(tmp, base)
    else:
        kind = FULL
        _copy_full_model(cfg, model_dir, tmp)
        _generation_ready(tmp, tokenizer)
    write_base_record(tmp, base)
    write_model_card(tmp, summary, kind, base)
    return kind, base


def export(
    run_dir: str | Path, output: str | Path, merge: bool = False, overwrite: bool = False
) -> ExportResult:
    """Export the finished run in ``run_dir`` to the folder ``output`` (see the module docstring)."""
    from raco.config import RunConfig
    from raco.config_tree import build

    run_dir, output = Path(run_dir), Path(output)
    tree, summary, lora = check_run(run_dir)
    _check_output(output, run_dir, overwrite)
    cfg = build(RunConfig, tree)  # no tracker checks: exporting needs none of the run's loggers
    started = time.time()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.export-", dir=output.parent))
    try:
        kind, base = _write(tmp, cfg, summary, run_dir / MODEL_DIR, lora, merge)
        give_umask_modes(tmp)  # mkdtemp is 0o700, safetensors files 0o600
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    return ExportResult(output, kind, base, time.time() - started, size)


DESCRIPTION = """Write a finished run's model as a folder others can use: safetensors weights, the
tokenizer, a model card (README.md) and the portable base model.

LoRA runs: --merge merges the adapter into its base (rebuilt exactly as training loaded it) and
writes a plain transformers model that AutoModelForCausalLM.from_pretrained(DIR) loads without raco or
peft; without --merge DIR holds the adapter, whose adapter_config.json names the base by its Hugging
Face id (peft loads it on top of that base). Full fine-tuning runs: DIR holds the model either way."""


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``raco export``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory `raco train` wrote")
    parser.add_argument("--output", "-o", metavar="DIR", required=True, help="folder to write")
    parser.add_argument(
        "--merge", action="store_true", help="LoRA runs: merge the adapter into the base (a full model)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")


def run_export(args: argparse.Namespace) -> int:
    """``raco export``: 0 on success, 2 (one-paragraph message on stderr) when it cannot export."""
    try:
        result = export(args.run_dir, args.output, merge=args.merge, overwrite=args.overwrite)
    except ExportError as err:
        print(f"raco export: error: {err}", file=sys.stderr)
        return 2
    size = result.bytes / 2**20
    loader = "peft (adapter)" if result.kind == "adapter" else "AutoModelForCausalLM.from_pretrained"
    print(
        f"raco export: {result.kind} model in {result.output} ({size:.1f} MiB, {result.seconds:.1f} s); "
        f"load it with {loader}; its README.md shows how"
    )
    if result.kind == "adapter" and not result.base.get("hub_id"):
        print(
            f"raco export: note: the base `{result.base['name']}` is not on the Hugging Face Hub; "
            "--merge writes a folder that loads without it",
            file=sys.stderr,
        )
    return 0
