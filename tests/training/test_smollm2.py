"""`raco train` on the bundled SmolLM2-135M-Instruct with LoRA."""

from __future__ import annotations

import json
from pathlib import Path

from raco.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_raco_train_smollm2_lora(toy_files, tmp_path):
    train_file, eval_file = toy_files
    status = main(
        [
            "train",
            "--config",
            str(REPO / "configs/cpu/smollm2-lora.yaml"),
            "--data.train",
            str(train_file),
            "--data.eval",
            str(eval_file),
            "--data.max_eval_rows",
            "8",
            "--train.max_steps",
            "3",
            "--train.batch_size",
            "2",
            "--train.eval_every",
            "0",
            "--train.save_every",
            "0",
            "--output_dir",
            str(tmp_path / "run"),
            "--log.progress",
            "false",
        ]
    )
    assert status == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["reference"] == "adapter"
    assert summary["trainable_parameters"] < 1_000_000
    assert (tmp_path / "run" / "model" / "adapter_model.safetensors").is_file()
    metrics = summary["final_metrics"]
    assert "eval/friendly/rewards/accuracies" in metrics and "pareto_measure" in metrics
