"""The model card (``README.md``) of a run's model folder and of ``raco export``'s output.

Built from the run's summary (``summary.json``): the portable base model, objectives and weights, the
method and its options, the data (sources, rows, sign counts), the final held-out metrics, the
versions, and a short code block that loads the folder and generates. The metadata block is
huggingface_hub's :class:`~huggingface_hub.ModelCardData`, so the Hub reads it as it reads any card.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

import raco
from raco.metric_keys import eval_key, objective_key
from raco.models.portable import portable_base_name
from raco.registry import method_plan

ADAPTER, FULL, MERGED = "adapter", "full", "merged"
KINDS = (ADAPTER, FULL, MERGED)
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".arrow", ".txt", ".tsv")
METHOD_TITLES = {  # what the card says of each method (registry.METHODS holds the plans)
    "raco": "RACO (CAGrad with conflict-correction coefficients clipped by the weights)",
    "cagrad": "CAGrad (weighted anchor)",
    "mgda": "MGDA (min-norm point of the per-objective gradients)",
    "weighted_sum": "weighted sum of the per-objective losses (DPO-LW)",
    "amopo": "AMoPO (reference-free, length-normalised loss, weighted sum)",
}
FOLDER_PLACEHOLDER = 'folder = "path/to/this/folder"  # or its Hub id once uploaded'


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e6):
        return str(int(value))
    return f"{value:.4g}"


def is_local_data(name: str) -> bool:
    """Whether a data source is a file or folder (shown by its name only) rather than a dataset id."""
    path = Path(name)
    return path.is_absolute() or name.startswith(".") or path.suffix in DATA_SUFFIXES or path.exists()


def _source(name: str, data_dir: str | None = None, config_name: str | None = None) -> str:
    if is_local_data(name):
        return f"`{Path(name).name}` (local file)"
    extras = [f"config `{config_name}`"] if config_name else []
    extras += [f"data_dir `{data_dir}`"] if data_dir else []
    link = f"[`{name}`](https://huggingface.co/datasets/{name})"
    return link + (f" ({', '.join(extras)})" if extras else "")


def _dataset_ids(data_cfg: dict) -> list[str]:
    names = [data_cfg.get("train") or "", data_cfg.get("eval") or ""]
    names += [part.get("path_or_name") or "" for part in (data_cfg.get("separate") or {}).values()]
    return sorted({n for n in names if n and not is_local_data(n)})


def _base_lines(base: dict[str, Any]) -> list[str]:
    kind, hub_id = base.get("kind"), base.get("hub_id")
    if hub_id:
        line = f"- [`{hub_id}`](https://huggingface.co/{hub_id})"
        if base.get("revision"):
            line += f", revision `{base['revision']}`"
        if base.get("gguf_file"):
            line += f", GGUF file `{base['gguf_file']}` (de-quantised by transformers when loaded)"
        lines = [line]
        if kind == "smollm2-135m-instruct":
            lines.append(f"- As trained: {base['rebuild']}.")
        return lines
    if kind == "tiny-random":
        return [f"- `tiny-random`, seed {base.get('seed')}: {base['rebuild']}."]
    return [f"- `{base['name']}`: a local folder on the training machine (no Hugging Face id recorded)."]


def _usage(kind: str, base: dict[str, Any]) -> list[str]:
    generate = [
        'inputs = tokenizer("Say something about the sea.", return_tensors="pt")',
        "# chat data: inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,",
        '#                                                  return_dict=True, return_tensors="pt")',
        "output = model.generate(**inputs, max_new_tokens=32, do_sample=False)",
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))',
    ]
    if kind != ADAPTER:
        code = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            FOLDER_PLACEHOLDER,
            "model = AutoModelForCausalLM.from_pretrained(folder)",
            "tokenizer = AutoTokenizer.from_pretrained(folder)",
        ]
        intro = "A plain transformers model (no raco, no peft needed):"
        return [intro, "", "```python", *code, *generate, "```"]
    if base.get("kind") == "tiny-random":
        code = [
            "from peft import PeftModel",
            "from transformers import AutoTokenizer",
            "from raco.models.loading import tiny_random_model  # the base exists only in raco",
            "",
            FOLDER_PLACEHOLDER,
            "tokenizer = AutoTokenizer.from_pretrained(folder)",
            f"base = tiny_random_model({base.get('seed')}, len(tokenizer))",
            "model = PeftModel.from_pretrained(base, folder)",
        ]
        intro = "A LoRA adapter on raco's `tiny-random` base, rebuilt by raco:"
    else:
        code = [
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            "",
            FOLDER_PLACEHOLDER,
            f"model = AutoPeftModelForCausalLM.from_pretrained(folder)  # fetches {portable_base_name(base)}",
            "tokenizer = AutoTokenizer.from_pretrained(folder)",
        ]
        intro = "A LoRA adapter (peft); transformers alone also loads it when peft is installed:"
    lines = [intro, "", "```python", *code, *generate, "```"]
    if base.get("kind") == "smollm2-135m-instruct":
        lines += [
            "",
            "To apply it to exactly the weights it was trained on (offline, with raco installed): "
            "`base = AutoModelForCausalLM.from_pretrained(raco.models.loading.smollm2_model_dir())`, then "
            "`model = PeftModel.from_pretrained(base, folder)`.",
        ]
    lines += [
        "",
        "`raco export RUN_DIR --output DIR --merge` writes the adapter merged into its base: a full "
        "model that loads without raco or peft.",
    ]
    return lines


def _data_lines(summary: dict[str, Any]) -> list[str]:
    data_cfg = summary["config"]["data"]
    stats = summary.get("data") or {}
    lines = []
    if data_cfg.get("separate"):
        lines.append("- Training data, one dataset per objective:")
        for name, part in data_cfg["separate"].items():
            source = _source(part.get("path_or_name", ""), part.get("data_dir"), part.get("config_name"))
            lines.append(f"  - {name}: {source}")
    else:
        source = _source(data_cfg["train"], data_cfg.get("data_dir"), data_cfg.get("config_name"))
        split = "" if is_local_data(data_cfg["train"]) else f", split `{data_cfg.get('split', 'train')}`"
        lines.append(f"- Training data: {source}{split}")
    if data_cfg.get("eval"):
        lines.append(f"- Held-out data: {_source(data_cfg['eval'])}")
    elif data_cfg.get("eval_split"):
        lines.append(f"- Held-out data: split `{data_cfg['eval_split']}`")
    else:
        lines.append(f"- Held-out data: {data_cfg.get('eval_fraction')} of the training rows")
    if "train_rows" in stats:
        rows = f"{stats['train_rows']} training pairs, {stats.get('eval_rows', 0)} held-out pairs"
        lines.append(f"- Rows: {rows}")
    skipped = {part: counts for part, counts in (stats.get("skipped") or {}).items() if counts}
    if skipped:
        lines.append(f"- Rows skipped when loading: {skipped}")
    signs = stats.get("train_signs") or {}
    if signs:
        lines += [
            "",
            "Training preference signs per objective (+1: response 1 preferred, −1: response 2, "
            "0: tie or unlabelled, no gradient):",
            "",
            "| objective | +1 | −1 | 0 |",
            "|---|---|---|---|",
        ]
        lines += [f"| {name} | {c['+1']} | {c['-1']} | {c['0']} |" for name, c in signs.items()]
    return lines


def _method_lines(summary: dict[str, Any]) -> list[str]:
    cfg = summary["config"]
    method, train, lora, model = cfg["method"], cfg["train"], cfg["lora"], cfg["model"]
    name = method["name"]
    lines = [f"- Method: `{name}` — {METHOD_TITLES.get(name, name)}"]
    options = []
    if name in ("raco", "cagrad"):
        options.append(f"c = {method['c']}")
    options += [f"normalize = {method['normalize']}", f"solve_per = {method['solve_per']}"]
    options.append(f"gradient path = {summary.get('gradient_path', method.get('path'))}")
    lines.append(f"- Options: {', '.join(options)}; reference policy: {summary.get('reference')}")
    if lora.get("enabled"):
        targets = ", ".join(lora["target_modules"])
        adapted = f"LoRA r = {lora['r']}, alpha = {_number(lora['alpha'])}, dropout = {lora['dropout']}"
        adapted += f", on {targets}" + (" (QLoRA, 4-bit base)" if lora.get("load_in_4bit") else "")
    else:
        adapted = "full fine-tuning"
    lines.append(f"- Trained: {adapted}, {model['dtype']} weights")
    per_step = train["batch_size"] * train.get("grad_accum", 1) * summary.get("processes", 1)
    lines.append(
        f"- Optimisation: {summary.get('steps')} steps of {per_step} pairs, AdamW lr {train['lr']} "
        f"({train['schedule']}, warm-up ratio {train['warmup_ratio']}), seed {train['seed']}"
    )
    return lines


def _objective_lines(summary: dict[str, Any]) -> list[str]:
    metrics = summary.get("final_metrics") or {}
    lines = [
        "| objective | weight | loss | β | held-out accuracy | held-out loss |",
        "|---|---|---|---|---|---|",
    ]
    for o, weight in zip(summary["config"]["objectives"], summary["weights"], strict=True):
        name = o["name"]
        accuracy = metrics.get(eval_key(objective_key(name, "rewards/accuracies")), "–")
        loss = metrics.get(eval_key(objective_key(name, "loss")), "–")
        loss_name = method_plan(summary.get("method", "raco")).loss or o["loss"]
        cells = [name, _number(weight), loss_name, o["beta"], _number(accuracy), _number(loss)]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    weighted, mean = eval_key("weighted_accuracy"), eval_key("mean_accuracy")
    if weighted in metrics:
        lines += ["", f"Weighted held-out accuracy Σ wᵢ·accᵢ: {_number(metrics[weighted])}."]
    if mean in metrics:  # a method the weights do not steer (mgda)
        lines += ["", f"Mean held-out accuracy (unweighted): {_number(metrics[mean])}."]
    return lines


def model_card(summary: dict[str, Any], kind: str, base: dict[str, Any]) -> ModelCard:
    """The card of a folder holding a run's ``adapter``, ``full`` model or ``merged`` LoRA model.

    ``summary`` is the run's summary (``summary.json``), ``base`` its portable base record
    (:func:`raco.models.portable.base_model_record`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cfg = summary["config"]
    pairs = zip(summary["objectives"], summary["weights"], strict=True)
    names = ", ".join(f"{o} ({_number(w)})" for o, w in pairs)
    plan = method_plan(cfg["method"]["name"])
    losses = {plan.loss} if plan.loss else {o["loss"] for o in cfg["objectives"]}
    tags = ["raco", "preference-alignment", "multi-objective", *sorted(losses)]
    tags += ["lora"] if cfg["lora"].get("enabled") else []
    data = ModelCardData(
        base_model=base.get("hub_id"),
        library_name="peft" if kind == ADAPTER else "transformers",
        pipeline_tag="text-generation",
        tags=tags,
        datasets=_dataset_ids(cfg["data"]) or None,
    )
    what = {
        ADAPTER: "a LoRA adapter",
        FULL: "a fully fine-tuned model",
        MERGED: "a full model (its LoRA adapter merged into the base weights)",
    }[kind]
    base_name = portable_base_name(base)
    versions = summary.get("versions") or {}
    body = [
        f"# {base_name.rsplit('/', 1)[-1]} aligned with raco: {names}",
        "",
        f"This folder holds {what} trained with [raco](https://pypi.org/project/raco-align/) "
        f"(method `{cfg['method']['name']}`) on pairwise preference data, balancing "
        f"{len(summary['objectives'])} objectives with the weights in parentheses: {names}.",
        "",
        "## Base model",
        "",
        *_base_lines(base),
        "",
        "## Objectives, weights and held-out results",
        "",
        *_objective_lines(summary),
        "",
        "## Method",
        "",
        *_method_lines(summary),
        "",
        "## Data",
        "",
        *_data_lines(summary),
        "",
        "## Use",
        "",
        *_usage(kind, base),
        "",
        "## Versions",
        "",
        f"raco {versions.get('raco-align', raco.__version__)}, transformers {versions.get('transformers')}, "
        f"peft {versions.get('peft')}, torch {versions.get('torch')}.",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def write_model_card(folder: Path, summary: dict[str, Any], kind: str, base: dict[str, Any]) -> Path:
    """Write :func:`model_card` as ``folder``'s ``README.md``; returns its path."""
    path = Path(folder) / "README.md"
    model_card(summary, kind, base).save(path)
    return path
