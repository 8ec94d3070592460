"""One metric vocabulary: every key a run logs is described by raco.metric_keys.METRICS (and every entry
is logged by some run), and docs/metrics.md shows the whole table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raco.metric_keys import METRICS, describe, eval_key, objective_key, pair_key
from raco.training.loop import train
from raco.training.metrics import read_metrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
OBJECTIVES = ("friendly", "concise", "words")  # the run's, and eval.objectives' "words"
JUDGED = {  # eval.generate_every: answers to held-out prompts, judged by a length scorer
    "eval.generate_every": 1,
    "eval.max_prompts": 2,
    "eval.generation.max_new_tokens": 2,
    "eval.objectives": [{"name": "words", "scorer": "length:unit=characters"}],
}


def _logged_keys(result) -> set[str]:
    keys = {key for record in read_metrics(result.run_dir) for key in record if key != "step"}
    return keys | set(json.loads(result.summary_file.read_text())["final_metrics"])


def test_every_logged_key_is_documented_and_every_documented_key_is_logged(tiny_config):
    """A RACO run (aggregator figures) and a float16 mgda run (loss_scale, eval/mean_accuracy) between
    them log every documented metric, and nothing undocumented."""
    seen: dict[str, set[str]] = {}
    for name, overrides in (
        ("raco", {"train.max_steps": 2, "log.every": 1, **JUDGED}),
        ("mgda-float16", {"method.name": "mgda", "model.dtype": "float16", "train.max_steps": 1}),
    ):
        tree = tiny_config(**overrides)
        tree["output_dir"] += f"-{name}"
        for key in _logged_keys(train(tree)):
            metric = describe(key, OBJECTIVES)
            assert metric is not None, f"{name} logs {key!r}, which docs/metrics.md does not describe"
            seen.setdefault(metric.pattern, set()).add(key)
    assert set(seen) == {m.pattern for m in METRICS}, "documented but never logged"
    assert seen["<a>|<b>/grad_cosine"] == {"friendly|concise/grad_cosine"}


def test_docs_table_lists_every_metric():
    text = DOCS.read_text()
    for metric in METRICS:
        row = f"| `{metric.pattern.replace('|', chr(92) + '|')}` | {metric.meaning} |"
        assert row in text, f"docs/metrics.md lacks the row {row}"


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("loss", "loss"),
        (objective_key("friendly", "loss"), "<objective>/loss"),
        (objective_key("concise", "rewards/margins"), "<objective>/rewards/margins"),
        (pair_key("concise", "friendly", "grad_cosine"), "<a>|<b>/grad_cosine"),
        (eval_key(objective_key("friendly", "rewards/accuracies")), "eval/<objective>/rewards/accuracies"),
        (eval_key("weighted_accuracy"), "eval/weighted_accuracy"),
        ("lr", None),  # renamed learning_rate
        ("loss/friendly", None),  # renamed friendly/loss
        ("other/loss", None),  # not an objective of the run
        (eval_key("grad_norm"), None),  # not evaluated
        (pair_key("friendly", "friendly", "grad_cosine"), None),
    ],
)
def test_describe(key, pattern):
    metric = describe(key, OBJECTIVES)
    assert (metric.pattern if metric else None) == pattern
