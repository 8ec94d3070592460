"""The ``raco sweep`` file: one training config, several methods × weight vectors × seeds, one eval.

    train: configs/cpu/tiny-random.yaml     # the base training config (relative to this file)
    overrides: {train.max_steps: 20}        # dotted overrides applied to every point
    methods: [raco, weighted_sum]
    weights: {grid: 0.25}                   # or {vectors: [[0.8, 0.2], ...]} or {dirichlet: 5, seed: 0}
    seeds: [0, 1]
    eval:                                   # a raco eval config (docs/eval.md), inline or a file path
      objectives: [{name: concise, scorer: "length:unit=words", direction: lower}]
    output_dir: sweeps/tiny

Weight vectors are named by the training objectives (in their order); eval objectives are matched to
training objectives by name, or by ``weight_objectives: {eval_objective: training_objective}``.
Everything is checked here — methods, weight vectors, scorers, the base config — before anything long
starts. Torch-free.
"""

from __future__ import annotations

import copy
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raco.config import RunConfig, config_from_tree, resolve_data_paths
from raco.config_tree import ConfigError, set_dotted, suggest
from raco.eval.config import EvalConfig, eval_config_from_tree
from raco.registry import METHOD_NAMES, method_plan

SWEEP_KEYS = (
    "train",
    "overrides",
    "methods",
    "weights",
    "seeds",
    "eval",
    "weight_objectives",
    "reference_point",
    "share_reference",
    "processes",
    "accelerate_config",
    "output_dir",
)


@dataclass
class SweepConfig:
    """A validated sweep: the base training tree, the points' settings and the eval config."""

    base: dict[str, Any]  # nested training config of every point, before method/weights/seed
    objectives: tuple[str, ...]  # training objectives, in weight-vector order
    methods: list[str]
    weights: list[tuple[float, ...]]
    seeds: list[int]
    eval: EvalConfig
    eval_tree: dict[str, Any]
    output_dir: Path
    weight_objectives: dict[str, str] = field(default_factory=dict)  # eval objective -> training one
    reference_point: dict[str, float] | None = None
    share_reference: bool = True
    source: dict[str, Any] = field(default_factory=dict)  # the sweep file as resolved (saved, compared)
    command: str = ""  # the command line that ran it (for the report)
    processes: int = 1  # > 1: each point trains under `accelerate launch --num_processes N`
    accelerate_config: str | None = None  # an accelerate config file for those launches

    def point_ids(self) -> list[str]:
        """Every point's id, in the order they run: method, then weights, then seed."""
        return [point_id(m, w, s) for m, w, s in itertools.product(self.methods, self.weights, self.seeds)]

    def trained_as(self, method: str, weights: tuple[float, ...], seed: int) -> str:
        """The id of the run that stands for this point: its own, or — for a method whose direction
        ignores the weights (``uses_weights`` false in raco.registry: mgda) — the same method and seed at
        the sweep's first weight vector, since training it at other weights would repeat that run
        exactly (same data order, same updates; only the weighted sums it logs differ)."""
        if method_plan(method).uses_weights:
            return point_id(method, weights, seed)
        return point_id(method, self.weights[0], seed)

    def trained_ids(self) -> list[str]:
        """The runs the sweep trains, in order: every point's own, once per seed for weight-agnostic
        methods (:meth:`trained_as`)."""
        runs = itertools.product(self.methods, self.weights, self.seeds)
        return list(dict.fromkeys(self.trained_as(m, w, s) for m, w, s in runs))


def point_id(method: str, weights: tuple[float, ...], seed: int) -> str:
    """``raco-w0.80-0.20-s0``: the point's folder name."""
    return f"{method}-w{'-'.join(f'{w:.2f}' for w in weights)}-s{seed}"


def simplex_grid(k: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector on the k-simplex whose entries are multiples of ``step`` (1/step integer)."""
    n = round(1 / step)
    if n < 1 or abs(n * step - 1) > 1e-9:
        raise ConfigError(f"weights.grid: the step must divide 1 (0.5, 0.25, 0.1, ...), got {step}")
    vectors = [c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n]
    return [tuple(round(c / n, 10) for c in combo) for combo in sorted(vectors, reverse=True)]


def dirichlet(k: int, n: int, seed: int, alpha: float = 1.0) -> list[tuple[float, ...]]:
    """``n`` weight vectors drawn from Dirichlet(alpha, ..., alpha) with ``seed`` (rounded to 4 places,
    the last entry taking the rounding so that each sums to 1 exactly)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        draws = [rng.gammavariate(alpha, 1.0) for _ in range(k)]
        total = sum(draws)
        head = [round(d / total, 4) for d in draws[:-1]]
        out.append((*head, round(1 - sum(head), 4)))
    return out


def _weights(spec: Any, k: int) -> list[tuple[float, ...]]:
    if not isinstance(spec, dict) or len(set(spec) - {"seed", "alpha"}) != 1:
        raise ConfigError(
            "weights: give one of {grid: STEP}, {vectors: [[...], ...]}, {dirichlet: N, seed: S}"
        )
    if "grid" in spec:
        vectors = simplex_grid(k, float(spec["grid"]))
    elif "vectors" in spec:
        vectors = [tuple(float(w) for w in v) for v in spec["vectors"]]
    elif "dirichlet" in spec:
        vectors = dirichlet(
            k, int(spec["dirichlet"]), int(spec.get("seed", 0)), float(spec.get("alpha", 1.0))
        )
    else:
        raise ConfigError(f"weights: unknown form {sorted(spec)}; use grid, vectors or dirichlet")
    for i, vector in enumerate(vectors):
        where = f"weights vector {i + 1} {list(vector)}"
        if len(vector) != k:
            raise ConfigError(f"{where}: has {len(vector)} entries for {k} training objectives")
        if any(w < 0 for w in vector):
            raise ConfigError(f"{where}: weights must not be negative")
        if abs(sum(vector) - 1) > 1e-6:
            raise ConfigError(f"{where}: weights must sum to 1 (sum {sum(vector):.6g})")
    if len(set(vectors)) != len(vectors):
        raise ConfigError("weights: a weight vector is listed twice")
    return vectors


def _training_objectives(cfg: RunConfig) -> tuple[str, ...]:
    """The run's objectives: listed in the config, else the data's (read without torch)."""
    if cfg.objectives:
        return tuple(o.name for o in cfg.objectives)
    from raco.data.load import load_preference_data
    from raco.data.spec import spec_from_config

    return tuple(load_preference_data(spec_from_config(cfg.data)).objectives)


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from err
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return tree


def load_sweep_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """The validated sweep of a YAML file plus dotted ``overrides`` (``--methods raco,cagrad``,
    ``--output_dir x``, ``--overrides.train.max_steps 5``)."""
    tree = _read_yaml(Path(path), "sweep file") if path is not None else {}
    folder = Path(path).parent if path is not None else Path.cwd()
    for key, value in (overrides or {}).items():
        head, _, rest = key.partition(".")
        if head not in SWEEP_KEYS:
            raise ConfigError(f"unknown sweep key `{head}`{suggest(head, list(SWEEP_KEYS))}")
        if head == "overrides" and rest:
            tree.setdefault("overrides", {})[rest] = value
        elif head == "eval" and rest:
            eval_tree = tree.setdefault("eval", {})
            if not isinstance(eval_tree, dict):
                raise ConfigError("--eval.*: the sweep's eval is a file path; edit that file instead")
            set_dotted(eval_tree, EvalConfig, rest, value)
        elif head in ("methods", "seeds") and isinstance(value, str):
            tree[head] = [v.strip() for v in value.split(",") if v.strip()]
        elif head in ("weights", "weight_objectives", "reference_point") and isinstance(value, str):
            try:
                tree[head] = yaml.safe_load(value)  # --weights '{grid: 0.25}'
            except yaml.YAMLError as err:
                raise ConfigError(f"--{head}: not a YAML value: {err}") from None
        else:
            tree[head] = value
    unknown = sorted(set(tree) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"unknown sweep key `{unknown[0]}`{suggest(unknown[0], list(SWEEP_KEYS))}")
    if not tree.get("train"):
        raise ConfigError("train: the base training config (a YAML path) is required")
    train_path = Path(str(tree["train"]))
    train_path = train_path if train_path.is_absolute() or train_path.exists() else folder / train_path
    base = _read_yaml(train_path, "training config")
    resolve_data_paths(base, train_path.parent)
    for key, value in (tree.get("overrides") or {}).items():
        set_dotted(base, RunConfig, str(key), value)
    cfg = config_from_tree(base)  # checked once as the points will be (minus method/weights/seed)
    objectives = _training_objectives(cfg)
    methods = [str(m) for m in (tree.get("methods") or ["raco"])]
    for method in methods:
        if method not in METHOD_NAMES:
            raise ConfigError(f"methods: unknown method {method!r}{suggest(method, list(METHOD_NAMES))}")
    seeds = [int(s) for s in (tree.get("seeds") or [cfg.train.seed])]
    eval_spec = tree.get("eval") or {}
    if isinstance(eval_spec, str):
        eval_path = Path(eval_spec) if Path(eval_spec).exists() else folder / eval_spec
        eval_tree = _read_yaml(eval_path, "eval config")
    else:
        eval_tree = copy.deepcopy(eval_spec)
    eval_cfg = _eval_config(eval_tree)
    mapping = {str(k): str(v) for k, v in (tree.get("weight_objectives") or {}).items()}
    for eval_name, train_name in mapping.items():
        if train_name not in objectives:
            raise ConfigError(f"weight_objectives.{eval_name}: {train_name!r} is not a training objective")
    source = {**tree, "train": str(train_path.resolve())}
    return SweepConfig(
        base=base,
        objectives=objectives,
        methods=methods,
        weights=_weights(tree.get("weights") or {"grid": 0.5}, len(objectives)),
        seeds=seeds,
        eval=eval_cfg,
        eval_tree=eval_tree,
        output_dir=Path(str(tree.get("output_dir") or "sweeps/sweep")),
        weight_objectives=mapping,
        reference_point=tree.get("reference_point"),
        share_reference=bool(tree.get("share_reference", True)),
        source=source,
        processes=_processes(tree.get("processes", 1)),
        accelerate_config=str(tree["accelerate_config"]) if tree.get("accelerate_config") else None,
    )


def _processes(value: Any) -> int:
    try:
        processes = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"processes: a whole number of processes per point, got {value!r}") from None
    if processes < 1:
        raise ConfigError(f"processes: at least 1, got {processes}")
    return processes


def _eval_config(eval_tree: dict[str, Any]) -> EvalConfig:
    try:
        cfg = eval_config_from_tree(eval_tree)
    except ConfigError as err:
        raise ConfigError(f"eval: {err}") from None
    if not cfg.objectives:
        raise ConfigError(
            "eval.objectives: a sweep judges its points by at least one objective (docs/eval.md)"
        )
    return cfg


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Top-level keys whose values differ between two resolved sweep files."""
    keys = sorted(set(saved) | set(current))
    return [k for k in keys if saved.get(k) != current.get(k)]
