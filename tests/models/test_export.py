"""`raco export` end to end, and the portable model folder every run writes.

Two tiny-random runs of 2 steps (LoRA and full fine-tuning) are exported; the merged and full folders
are loaded in a fresh Python process in which ``raco`` and ``peft`` cannot be imported, by
``AutoModelForCausalLM.from_pretrained`` alone, and their logits compared with the trained model's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

import raco
from raco.cli import main
from raco.config import ModelConfig, ObjectiveConfig, RunConfig
from raco.config_tree import build
from raco.models.card import FOLDER_PLACEHOLDER, model_card
from raco.models.loading import SMOLLM2_HF_DIR, prepare_base, tiny_random_model
from raco.models.offline import cache_dir
from raco.models.portable import (
    BASE_FILE,
    SMOLLM2_HUB_ID,
    base_model_record,
    local_base_path,
    make_adapter_config_portable,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from toy_data import tiny_tree, write_toy

PROMPT = "Say something about the sea."


def _run(root: Path, name: str, **overrides) -> Path:
    train_file, eval_file = write_toy(root / "train.jsonl", 32, 0), write_toy(root / "eval.jsonl", 16, 1)
    settings = {"train.max_steps": 2, "train.batch_size": 4, "train.eval_batch_size": 16, **overrides}
    return raco.train(tiny_tree(train_file, eval_file, root / name, **settings)).run_dir


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("lora"), "run", **{"lora.enabled": True, "model.seed": 3})


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("full"), "run")


def _config(run_dir: Path) -> RunConfig:
    import yaml

    return build(RunConfig, yaml.safe_load((run_dir / "config.yaml").read_text()))


def _logits(model, folder: Path) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return model.eval()(**tokenizer(PROMPT, return_tensors="pt")).logits


def _trained_peft(run_dir: Path):
    """The trained policy: its base rebuilt as training did, with the run's saved adapter."""
    cfg = _config(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    return PeftModel.from_pretrained(prepare_base(cfg.model, cfg.lora, len(tokenizer)), run_dir / "model")


def _card_code(folder: Path) -> str:
    """The python block of the folder's model card, pointed at the folder."""
    text = (folder / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert FOLDER_PLACEHOLDER in code
    return code.replace(FOLDER_PLACEHOLDER, f"folder = {str(folder)!r}")


# Runs in a fresh interpreter where `import raco` and `import peft` fail (and transformers sees no peft).
PLAIN_LOADER = textwrap.dedent(
    """
    import json, sys
    sys.modules["raco"] = None
    sys.modules["peft"] = None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = {}
    for folder in sys.argv[2:]:
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        inputs = tokenizer(sys.argv[1], return_tensors="pt")
        with torch.no_grad():
            torch.save(model(**inputs).logits, folder + ".logits.pt")
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        card_globals = {}
        exec(open(folder + ".card.py").read(), card_globals)  # the model card's own example
        report[folder] = {
            "class": type(model).__name__,
            "new_tokens": output.shape[1] - inputs["input_ids"].shape[1],
            "card_new_tokens": card_globals["output"].shape[1] - card_globals["inputs"]["input_ids"].shape[1],
        }
    report["modules"] = sorted(m for m in ("raco", "peft") if sys.modules.get(m) is not None)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def exported(lora_run, full_run, tmp_path_factory):
    """The merged LoRA export and the full export, loaded without raco or peft in a fresh process."""
    root = tmp_path_factory.mktemp("exported")
    merged, full = root / "merged", root / "full"
    assert main(["export", str(lora_run), "--output", str(merged), "--merge"]) == 0
    assert main(["export", str(full_run), "--output", str(full)]) == 0
    for folder in (merged, full):
        Path(f"{folder}.card.py").write_text(_card_code(folder))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_LOADER, PROMPT, str(merged), str(full)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return merged, full, report


def test_a_lora_runs_model_folder_names_a_portable_base(lora_run):
    model_dir = lora_run / "model"
    adapter_config = json.loads((model_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "tiny-random"
    record = json.loads((model_dir / BASE_FILE).read_text())
    assert record["kind"] == "tiny-random" and record["seed"] == 3 and record["hub_id"] is None
    summary = json.loads((lora_run / "summary.json").read_text())
    assert summary["base_model"] == {**record, "local_path": None}
    # the card's recipe rebuilds the base from the alias and seed: same logits as the trained policy
    card_globals: dict = {}
    exec(_card_code(model_dir), card_globals)
    assert card_globals["output"].shape[1] > card_globals["inputs"]["input_ids"].shape[1]
    rebuilt = _logits(card_globals["model"], model_dir)
    assert torch.equal(rebuilt, _logits(_trained_peft(lora_run), model_dir))


def test_the_model_card_describes_the_run(lora_run, full_run):
    card = ModelCard.load(lora_run / "model" / "README.md")
    summary = json.loads((lora_run / "summary.json").read_text())
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert "raco" in card.data.tags and "lora" in card.data.tags and card.data.base_model is None
    text = card.text
    for expected in (
        "friendly (0.6), concise (0.4)",  # objectives and weights
        "c = 0.4, normalize = batch, solve_per = step",
        "LoRA r = 8, alpha = 16",
        "`train.jsonl` (local file)",
        "32 training pairs, 16 held-out pairs",
        f"raco {raco.__version__}",
        "tiny_random_model(3, len(tokenizer))",
        "```python",
    ):
        assert expected in text, expected
    for name, counts in summary["data"]["train_signs"].items():
        assert f"| {name} | {counts['+1']} | {counts['-1']} | {counts['0']} |" in text
    accuracy = summary["final_metrics"]["eval/friendly/rewards/accuracies"]
    assert f"| friendly | 0.6 | dpo | 0.5 | {accuracy:.4g} |" in text
    full_card = ModelCard.load(full_run / "model" / "README.md")
    assert full_card.data.library_name == "transformers" and "full fine-tuning" in full_card.text
    assert "peft" not in _card_code(full_run / "model")


def test_export_merge_loads_with_transformers_alone_and_matches_the_trained_model(lora_run, exported):
    merged, _, report = exported
    assert report["modules"] == []  # neither raco nor peft was importable in the loading process
    assert report[str(merged)]["class"] == "LlamaForCausalLM"
    assert 1 <= report[str(merged)]["new_tokens"] <= 4 and report[str(merged)]["card_new_tokens"] >= 1
    files = {p.name for p in merged.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", BASE_FILE} <= files
    assert not any(name.startswith("adapter") or name.endswith(".bin") for name in files)
    plain = torch.load(f"{merged}.logits.pt")
    trained = _logits(_trained_peft(lora_run), lora_run / "model")
    base_only = _logits(tiny_random_model(3, plain.shape[-1]), lora_run / "model")
    assert (trained - base_only).abs().max() > 1e-4  # the adapter matters...
    torch.testing.assert_close(plain, trained, atol=1e-5, rtol=0)  # ...and is merged in
    card = ModelCard.load(merged / "README.md")
    assert card.data.library_name == "transformers" and "LoRA adapter merged" in card.text
    generation = json.loads((merged / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert generation["eos_token_id"] == tokenizer.eos_token_id


def test_export_of_a_full_run_is_the_trained_model(full_run, exported):
    _, full, report = exported
    assert report[str(full)]["class"] == "LlamaForCausalLM" and report[str(full)]["new_tokens"] >= 1
    trained = AutoModelForCausalLM.from_pretrained(full_run / "model")
    assert torch.equal(torch.load(f"{full}.logits.pt"), _logits(trained, full_run / "model"))
    assert (full / "model.safetensors").read_bytes() == (
        full_run / "model" / "model.safetensors"
    ).read_bytes()
    assert ModelCard.load(full / "README.md").data.library_name == "transformers"


def test_export_of_a_lora_run_without_merge_is_the_portable_adapter(lora_run, tmp_path, capsys):
    out = tmp_path / "adapter"
    assert main(["export", str(lora_run), "-o", str(out)]) == 0
    assert "not on the Hugging Face Hub; --merge" in capsys.readouterr().err
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-random"
    assert (out / "adapter_model.safetensors").read_bytes() == (
        lora_run / "model" / "adapter_model.safetensors"
    ).read_bytes()
    assert {"tokenizer.json", "README.md", BASE_FILE} <= {p.name for p in out.iterdir()}
    assert ModelCard.load(out / "README.md").data.library_name == "peft"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not the private temporary folder's mode


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raco export: error: ") and "\n" not in err  # one paragraph
    return err


def test_export_refuses_what_is_not_a_finished_run(lora_run, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert "is not a directory" in _error(["export", str(tmp_path / "missing"), "-o", out], capsys)
    (tmp_path / "empty").mkdir()
    assert "no config.yaml" in _error(["export", str(tmp_path / "empty"), "-o", out], capsys)
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints" / "step-00000002").mkdir(parents=True)
    (unfinished / "config.yaml").write_text((lora_run / "config.yaml").read_text())
    err = _error(["export", str(unfinished), "-o", out], capsys)
    assert "not a finished run" in err and "step-00000002" in err and "--resume" in err
    (unfinished / "summary.json").write_text((lora_run / "summary.json").read_text())
    (unfinished / "model").mkdir()
    assert "incomplete" in _error(["export", str(unfinished), "-o", out], capsys)
    assert not Path(out).exists()


def test_export_refuses_a_non_empty_output_unless_overwrite(lora_run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    assert "--overwrite" in _error(["export", str(lora_run), "-o", str(out)], capsys)
    assert (out / "old.txt").read_text() == "keep me"
    assert "would overwrite the run" in _error(
        ["export", str(lora_run), "-o", str(lora_run / "model"), "--overwrite"], capsys
    )
    assert main(["export", str(lora_run), "-o", str(out), "--overwrite"]) == 0
    assert not (out / "old.txt").exists() and (out / "adapter_model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.export-")]  # no temporary left


def test_portable_base_of_the_offline_smollm2_and_of_hub_ids(tmp_path):
    record = base_model_record(ModelConfig(name="smollm2-135m-instruct"))
    assert record["hub_id"] == SMOLLM2_HUB_ID and record["gguf"]["quantization"] == "Q4_1"
    assert "de-quantised" in record["rebuild"] and "not bit-identical" in record["rebuild"]
    assert local_base_path(ModelConfig(name="smollm2-135m-instruct")) == str(cache_dir() / SMOLLM2_HF_DIR)
    adapter_config = tmp_path / "adapter_config.json"
    adapter_config.write_text(
        json.dumps({"base_model_name_or_path": str(cache_dir() / SMOLLM2_HF_DIR), "r": 8})
    )
    make_adapter_config_portable(tmp_path, record)
    assert json.loads(adapter_config.read_text()) == {
        "base_model_name_or_path": SMOLLM2_HUB_ID,
        "r": 8,
        "revision": None,
    }
    hub = base_model_record(ModelConfig(name="Qwen/Qwen3-4B", revision="abc123"))
    assert hub["kind"] == "hub" and hub["hub_id"] == "Qwen/Qwen3-4B" and hub["revision"] == "abc123"
    make_adapter_config_portable(tmp_path, hub)
    assert json.loads(adapter_config.read_text())["revision"] == "abc123"
    local = base_model_record(ModelConfig(name=str(tmp_path)))
    assert local["kind"] == "local_folder" and local["hub_id"] is None and local["name"] == str(tmp_path)


def test_card_metadata_names_hub_bases_and_datasets():
    cfg = RunConfig()
    cfg.data.separate = {
        "helpful": {"path_or_name": "Anthropic/hh-rlhf", "data_dir": "helpful-base"},
        "harmless": {"path_or_name": "Anthropic/hh-rlhf", "data_dir": "harmless-base"},
    }
    cfg.objectives = [ObjectiveConfig("helpful", 0.5), ObjectiveConfig("harmless", 0.5)]
    summary = {
        "config": asdict(cfg),
        "objectives": ["helpful", "harmless"],
        "weights": [0.5, 0.5],
        "method": "raco",
        "final_metrics": {"eval/helpful/rewards/accuracies": 0.75, "eval/weighted_accuracy": "nan"},
        "data": {"train_rows": 10, "eval_rows": 2},
    }
    base = base_model_record(ModelConfig(name="smollm2-135m-instruct"))
    card = model_card(summary, "merged", base)
    assert card.data.base_model == SMOLLM2_HUB_ID and card.data.datasets == ["Anthropic/hh-rlhf"]
    assert "helpful: [`Anthropic/hh-rlhf`]" in card.text and "data_dir `harmless-base`" in card.text
    assert "de-quantised" in card.text and "| helpful | 0.5 | dpo | 0.1 | 0.75 | – |" in card.text
    adapter_card = model_card(summary, "adapter", base)
    assert "AutoPeftModelForCausalLM" in adapter_card.text and "smollm2_model_dir()" in adapter_card.text
    amopo = model_card(
        {
            **summary,
            "method": "amopo",
            "config": {**summary["config"], "method": {**summary["config"]["method"], "name": "amopo"}},
        },
        "merged",
        base,
    )
    assert (
        "| helpful | 0.5 | amopo |" in amopo.text
        and "amopo" in amopo.data.tags
        and "dpo" not in amopo.data.tags
    )


@pytest.mark.slow
def test_export_of_a_smollm2_lora_run(tmp_path, capsys):
    """The offline SmolLM2: the adapter names the Hub id, summary.json keeps the cache path, and the
    merged export (base rebuilt from the GGUF-derived folder) matches the trained adapter."""
    run_dir = _run(
        tmp_path,
        "run",
        **{
            "model.name": "smollm2-135m-instruct",
            "lora.enabled": True,
            "train.max_steps": 1,
            "train.batch_size": 2,
            "data.max_eval_rows": 4,
        },
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["base_model"]["local_path"] == str(cache_dir() / SMOLLM2_HF_DIR)
    adapter_text = (run_dir / "model" / "adapter_config.json").read_text()
    assert json.loads(adapter_text)["base_model_name_or_path"] == SMOLLM2_HUB_ID
    assert str(cache_dir()) not in adapter_text
    assert ModelCard.load(run_dir / "model" / "README.md").data.base_model == SMOLLM2_HUB_ID
    out = tmp_path / "merged"
    assert main(["export", str(run_dir), "-o", str(out), "--merge"]) == 0
    merged = _logits(AutoModelForCausalLM.from_pretrained(out), out)
    torch.testing.assert_close(merged, _logits(_trained_peft(run_dir), out), atol=1e-4, rtol=0)
