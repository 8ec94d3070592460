"""The end of a run: the model (or LoRA adapter) in Hugging Face format, and ``summary.json``.

The model folder is made portable: a LoRA adapter's ``adapter_config.json`` names the base by its
Hugging Face id (or raco alias) instead of the path it was loaded from, ``raco_base_model.json``
records how that base is rebuilt, and ``README.md`` is a model card (:mod:`raco.models.card`).
``summary.json`` keeps the machine-specific path of the base (``base_model.local_path``).
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from raco.atomic import atomic_write
from raco.config import to_dict
from raco.models.card import ADAPTER, FULL, write_model_card
from raco.models.portable import (
    base_model_record,
    local_base_path,
    make_adapter_config_portable,
    write_base_record,
)
from raco.training.metrics import json_safe

MODEL_DIR = "model"
SUMMARY_FILE = "summary.json"
PACKAGES = ("raco-align", "torch", "transformers", "peft", "accelerate", "datasets", "safetensors")


def versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on."""
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def save_model(session, folder: Path, summary: dict[str, Any] | None = None) -> None:
    """``save_pretrained`` (safetensors) of the policy or its adapter, plus the tokenizer; then the
    portable base (adapter config and ``raco_base_model.json``) and, given the run's ``summary``,
    the model card."""
    model = session.accelerator.unwrap_model(session.model)
    model.save_pretrained(folder, safe_serialization=True)
    session.tokenizer.save_pretrained(folder)
    base = base_model_record(session.cfg.model)
    write_base_record(folder, base)
    if session.cfg.lora.enabled:
        make_adapter_config_portable(folder, base)
    if summary is not None:
        write_model_card(folder, summary, ADAPTER if session.cfg.lora.enabled else FULL, base)


def save_final(session, final_metrics: dict[str, float], wall_seconds: float) -> dict[str, Any]:
    """Write the model and ``summary.json`` (main process); returns the summary."""
    run_dir = session.run_dir
    summary = {
        "run_dir": str(run_dir),
        "model_dir": str(run_dir / MODEL_DIR),
        "objectives": [spec.name for spec in session.specs],
        "weights": session.cfg.weights,
        "method": session.cfg.method.name,
        "gradient_path": session.engine.path,  # after any fallback of `auto`
        "reference": session.reference.kind,
        "steps": session.step,
        "total_steps": session.plan.total_steps,
        "skipped_steps": session.skipped_steps,
        "processes": session.accelerator.num_processes,
        "wall_seconds": round(wall_seconds, 2),
        "trainable_parameters": sum(p.numel() for p in session.params),
        "base_model": {
            **base_model_record(session.cfg.model),
            "local_path": local_base_path(session.cfg.model),  # this machine's copy: not portable
        },
        "data": session.data.stats,
        "final_metrics": {k: json_safe(v) for k, v in final_metrics.items()},
        "versions": versions(),
        "config": to_dict(session.cfg),
    }
    session.accelerator.wait_for_everyone()
    if session.accelerator.is_main_process:
        save_model(session, run_dir / MODEL_DIR, summary)
        text = json.dumps(summary, indent=1, default=str)
        atomic_write(run_dir / SUMMARY_FILE, lambda tmp: tmp.write_text(text))  # never torn
    session.accelerator.wait_for_everyone()
    return summary
