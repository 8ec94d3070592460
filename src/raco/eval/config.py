"""The ``raco eval`` configuration: a YAML file (``--config EVAL.yaml``) and ``--section.key value`` flags.

    objectives:                       # what the generated responses are judged on
      - {name: relevant, scorer: relevance, direction: higher}
      - {name: concise, scorer: "length:unit=words", direction: lower}
    generation: {max_new_tokens: 64, do_sample: false, seed: 0, batch_size: 8}
    prompts: {max_prompts: 64}        # default: the run's held-out prompts
    base: auto                        # also evaluate the run's starting model (auto: for runs)

Flags address objectives by name like ``raco train``: ``--objectives.concise.direction lower``.
Torch-free, so that a bad file is refused before any model loads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raco.config_tree import ConfigError, build, meta, opt, set_dotted
from raco.eval.generate import BACKENDS, GenerationConfig
from raco.eval.scorers import DIRECTIONS, ObjectiveScorer, ScorerError


@dataclass
class EvalObjective:
    """One judged objective: a scorer spec and which direction is better."""

    name: str = opt(help="objective name (its column in eval.json and generations.jsonl)")
    scorer: Any = field(
        default=None, metadata=meta("scorer spec: NAME[:key=value,...] or a mapping (docs/eval.md)")
    )
    direction: str = opt("higher", "which scores are better", choices=DIRECTIONS)

    def judged(self, where: str = "objectives") -> ObjectiveScorer:
        """The checked scorer and direction (errors name ``<where>.<name>``)."""
        if self.scorer in (None, ""):
            raise ConfigError(f"{where}.{self.name}.scorer: a value is required (e.g. length:unit=words)")
        try:
            return ObjectiveScorer(self.scorer, self.direction)  # type: ignore[arg-type]
        except ScorerError as err:
            raise ConfigError(f"{where}.{self.name}: {err}") from None


def judged_objectives(
    objectives: list[EvalObjective], where: str = "objectives"
) -> dict[str, ObjectiveScorer]:
    """Objective name → checked scorer and direction; a name listed twice is an error."""
    names = [o.name for o in objectives]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"{where}: {duplicate!r} is listed twice")
    return {o.name: o.judged(where) for o in objectives}


@dataclass
class GenerationSection:
    """How responses are generated (:class:`raco.eval.generate.GenerationConfig`)."""

    max_new_tokens: int = opt(128, "tokens generated per response at most")
    do_sample: bool = opt(False, "sample (true) or greedy decoding (false)")
    temperature: float = opt(1.0, "sampling temperature (do_sample only)")
    top_p: float = opt(1.0, "nucleus sampling mass (do_sample only)")
    seed: int = opt(0, "sampling seed: prompt i's draws depend only on (seed, i)")
    batch_size: int = opt(8, "prompts per generation batch")
    chat_template: str = opt(
        "auto",
        "auto: as `raco train` encodes prompts (the chat template for chat-message prompts only); "
        "true: for plain-text prompts too",
        choices=("auto", "true"),
    )
    backend: str = opt("transformers", "generation backend (vllm: GPU machines)", choices=BACKENDS)

    def settings(self) -> GenerationConfig:
        # False still applies the template to chat-message prompts (raco.eval.generate.encode_prompts)
        template = self.chat_template == "true"
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            batch_size=self.batch_size,
            chat_template=template,
            backend=self.backend,  # type: ignore[arg-type]
        )


@dataclass
class PromptsSection:
    """Which prompts are answered: the run's held-out prompts, or a file of your own."""

    path: str = opt("", "JSONL/JSON/CSV file of prompts (default: the run's held-out pairs' prompts)")
    column: str = opt("prompt", "the file's prompt column")
    reference_column: str = opt("", "the file's reference-answer column (for scorers that compare)")
    max_prompts: int = opt(64, "answer at most this many prompts (the first ones, in order)")


@dataclass
class EvalConfig:
    """Everything ``raco eval`` does besides choosing TARGET and --output."""

    objectives: list[EvalObjective] = field(default_factory=list)
    generation: GenerationSection = field(default_factory=GenerationSection)
    prompts: PromptsSection = field(default_factory=PromptsSection)
    preference: bool = opt(True, "preference metrics on the run's held-out pairs (runs only)")
    base: str = opt(
        "auto",
        "also evaluate the starting model (auto: for run directories)",
        choices=("auto", "true", "false"),
    )
    tuned: bool = opt(True, "evaluate TARGET itself (false with base: true evaluates only the base)")
    device: str = opt("auto", "cpu, cuda, cuda:1, ... (auto: cuda when available)")
    eval_batch_size: int = opt(16, "pairs per batch for the preference metrics")

    def judged(self) -> dict[str, ObjectiveScorer]:
        """Objective name → checked scorer and direction."""
        return judged_objectives(self.objectives)


def load_eval_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> EvalConfig:
    """The validated configuration from a YAML ``path`` (optional) and dotted ``overrides``; every
    objective's scorer spec is checked (torch-free)."""
    tree: dict = {}
    if path is not None:
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read eval config {path}: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    return eval_config_from_tree(tree, overrides)


def eval_config_from_tree(tree: dict, overrides: dict[str, Any] | None = None) -> EvalConfig:
    """:func:`load_eval_config` of a nested mapping (not modified)."""
    tree = copy.deepcopy(tree)
    if isinstance(tree.get("objectives"), dict):  # {name: {scorer, direction}} reads as a list
        tree["objectives"] = [{"name": k, **(v or {})} for k, v in tree["objectives"].items()]
    for key, value in (overrides or {}).items():
        set_dotted(tree, EvalConfig, key, value)
    cfg = build(EvalConfig, tree)
    cfg.judged()  # every spec checked now, before a model loads
    cfg.generation.settings()
    if cfg.prompts.max_prompts < 1:
        raise ConfigError(f"prompts.max_prompts: must be at least 1, got {cfg.prompts.max_prompts}")
    if not cfg.tuned and cfg.base == "false":
        raise ConfigError("tuned: false and base: false evaluate nothing")
    return cfg
