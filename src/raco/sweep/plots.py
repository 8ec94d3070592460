"""The PNG figures of ``raco report``: score-space fronts, hypervolume per method, training curves.

Every figure is drawn headless (matplotlib's Agg backend) at ``DPI`` dots per inch with a fixed size in
pixels, :func:`front_pixels`, ``HYPERVOLUME_PIXELS`` and ``TRAINING_PIXELS``; ``savefig`` is called
without ``bbox_inches="tight"``, so each PNG has exactly the stated size.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display, same pixels on every machine
import matplotlib.pyplot as plt

DPI = 100
FRONT_2D_PIXELS = (800, 640)
FRONT_PANEL_PIXELS = (480, 420)  # one panel of a k > 2 grid
FRONT_COLUMNS = 3
HYPERVOLUME_PIXELS = (720, 480)
TRAINING_PIXELS = (1200, 800)
MARKERS = "osD^vP*Xh<>"
CLIP_WINDOW = 10  # steps in the running share of clipped steps


@dataclass(frozen=True)
class ScorePoint:
    """One evaluated model in score space: ``label`` (its weights) is written beside it."""

    id: str
    method: str
    label: str
    scores: dict[str, float | None]
    on_front: bool


def front_pixels(n_objectives: int) -> tuple[int, int]:
    """(width, height) in pixels of the front figure for ``n_objectives`` eval objectives."""
    if n_objectives <= 2:
        return FRONT_2D_PIXELS
    panels = math.comb(n_objectives, 2)
    columns = min(FRONT_COLUMNS, panels)
    rows = math.ceil(panels / columns)
    return FRONT_PANEL_PIXELS[0] * columns, FRONT_PANEL_PIXELS[1] * rows


def _figure(pixels: tuple[int, int], rows: int = 1, columns: int = 1) -> tuple[Any, Any]:
    fig, axes = plt.subplots(
        rows, columns, figsize=(pixels[0] / DPI, pixels[1] / DPI), dpi=DPI, squeeze=False
    )
    return fig, axes


def _save(fig: Any, path: Path) -> tuple[int, int]:
    fig.savefig(path, dpi=DPI, format="png")
    width, height = fig.canvas.get_width_height()
    plt.close(fig)
    return int(width), int(height)


def axis_label(objective: str, direction: str) -> str:
    """``concise (↓ better, axis reversed)``: lower-is-better axes are reversed so up/right is better."""
    return f"{objective} (↑ better)" if direction == "higher" else f"{objective} (↓ better, axis reversed)"


def _orient(ax: Any, x_direction: str, y_direction: str) -> None:
    if x_direction == "lower":
        ax.invert_xaxis()
    if y_direction == "lower":
        ax.invert_yaxis()


def _front_panel(
    ax: Any,
    points: Sequence[ScorePoint],
    xy: tuple[str, str],
    directions: dict[str, str],
    base: dict[str, float] | None,
    reference: dict[str, float] | None,
    connect: bool,
) -> None:
    x_key, y_key = xy
    methods = list(dict.fromkeys(point.method for point in points))
    for index, method in enumerate(methods):
        color, marker = f"C{index % 10}", MARKERS[index % len(MARKERS)]
        mine = [p for p in points if p.method == method and _has(p, x_key) and _has(p, y_key)]
        for point in mine:
            x, y = point.scores[x_key], point.scores[y_key]
            face = color if point.on_front else "none"
            ax.scatter([x], [y], s=46, marker=marker, edgecolors=color, facecolors=face, zorder=3)
            ax.annotate(point.label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        front = sorted((p for p in mine if p.on_front), key=lambda p: p.scores[x_key] or 0.0)
        if connect and len(front) > 1:
            ax.plot([p.scores[x_key] for p in front], [p.scores[y_key] for p in front], color=color, lw=1.2)
        ax.scatter([], [], marker=marker, color=color, label=method)  # one legend entry per method
    if base and x_key in base and y_key in base:
        ax.scatter([base[x_key]], [base[y_key]], marker="*", s=180, color="black", zorder=4, label="base")
    if reference and reference != base and x_key in reference and y_key in reference:
        ax.scatter(
            [reference[x_key]], [reference[y_key]], marker="x", s=70, color="grey", label="reference point"
        )
    ax.set_xlabel(axis_label(x_key, directions.get(x_key, "higher")))
    ax.set_ylabel(axis_label(y_key, directions.get(y_key, "higher")))
    _orient(ax, directions.get(x_key, "higher"), directions.get(y_key, "higher"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def _has(point: ScorePoint, key: str) -> bool:
    value = point.scores.get(key)
    return value is not None and math.isfinite(value)


def plot_front(
    points: Sequence[ScorePoint],
    objectives: Sequence[str],
    directions: dict[str, str],
    base: dict[str, float] | None,
    reference: dict[str, float] | None,
    path: Path,
    title: str = "Scores of every point (filled: on its method's front; up and right are better)",
) -> tuple[int, int]:
    """Every point in eval-score space, per method one colour and marker, front points filled and (2-D)
    joined, labelled by weights; the base model a black star. One panel per pair of objectives."""
    pairs = list(combinations(objectives, 2))
    if not pairs:
        raise ValueError("a front plot needs at least 2 eval objectives")
    pixels = front_pixels(len(objectives))
    columns = min(FRONT_COLUMNS, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    fig, axes = _figure(pixels, rows, columns)
    for index, pair in enumerate(pairs):
        _front_panel(
            axes[index // columns][index % columns],
            points,
            pair,
            directions,
            base,
            reference,
            connect=len(objectives) == 2,
        )
    for index in range(len(pairs), rows * columns):
        axes[index // columns][index % columns].set_axis_off()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_hypervolume(per_method: dict[str, dict[str, Any]], path: Path) -> tuple[int, int]:
    """Per method, the mean hypervolume over seeds as a bar with ± one standard deviation and each
    seed's value as a dot. ``per_method[m]`` is front.json's ``hypervolume`` entry."""
    fig, axes = _figure(HYPERVOLUME_PIXELS)
    ax = axes[0][0]
    methods = list(per_method)
    for index, method in enumerate(methods):
        entry = per_method[method]
        mean, std = entry.get("mean"), entry.get("std")
        seeds = [v for v in (entry.get("per_seed") or {}).values() if v is not None]
        if mean is None and seeds:
            mean = statistics.fmean(seeds)
        color = f"C{index % 10}"
        if mean is not None:
            ax.bar(index, mean, yerr=std or 0.0, capsize=8, color=color, alpha=0.6, label=method)
        ax.scatter([index] * len(seeds), seeds, color="black", s=16, zorder=3)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("hypervolume (higher is better)")
    ax.set_title("Hypervolume per method: mean ± std over seeds (dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    steps: list[float] = []
    values: list[float] = []
    for record in records:
        value = record.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            steps.append(float(record.get("step", len(steps) + 1)))
            values.append(float(value))
    return steps, values


def _empty(ax: Any, title: str, why: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _loss_panel(ax: Any, records: Sequence[dict[str, Any]], objectives: Sequence[str]) -> None:
    for index, name in enumerate(objectives):
        color = f"C{index % 10}"
        ax.plot(*_series(records, f"{name}/loss"), color=color, label=f"{name}/loss")
        steps, values = _series(records, f"eval/{name}/loss")
        if steps:
            ax.plot(steps, values, "o--", color=color, ms=4, label=f"eval/{name}/loss")
    skipped = [s for s, v in zip(*_series(records, "skipped"), strict=True) if v]
    for step in skipped:
        ax.axvline(step, color="red", alpha=0.4, lw=0.8)
    note = f" ({len(skipped)} skipped steps: red lines)" if skipped else ""
    ax.set_title(f"Preference loss per objective{note}")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _cosine_panel(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    keys = sorted({k for r in records for k in r if k.endswith("/grad_cosine") and "|" in k})
    if not keys:
        _empty(ax, "Gradient cosine", "not logged (the weighted-sum path forms no per-objective gradients)")
        return
    for key in keys:
        ax.plot(*_series(records, key), label=key)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("Gradient cosine per pair (< 0: the objectives conflict)")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _clip_panel(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    steps, values = _series(records, "clip_active")
    if not steps:
        _empty(ax, "Clip activity", "not logged (RACO clipping applies to the aggregator methods only)")
        return
    running = [statistics.fmean(values[max(0, i - CLIP_WINDOW + 1) : i + 1]) for i in range(len(values))]
    ax.step(steps, values, where="mid", color="C0", alpha=0.5, label="clip_active (0/1)")
    ax.plot(steps, running, color="C1", label=f"share over the last {CLIP_WINDOW} steps")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"Clip activity (clipped on {statistics.fmean(values):.0%} of steps)")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _dual_panel(ax: Any, records: Sequence[dict[str, Any]], objectives: Sequence[str]) -> None:
    if not any(_series(records, f"{name}/dual")[0] for name in objectives):
        _empty(ax, "Dual", "not logged (only CAGrad and RACO solve a dual)")
        return
    for index, name in enumerate(objectives):
        ax.plot(*_series(records, f"{name}/dual"), color=f"C{index % 10}", label=f"{name}/dual")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Dual p_i per objective (its weight in the worst-case direction)")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_training(
    records: Sequence[dict[str, Any]], objectives: Sequence[str], title: str, path: Path
) -> tuple[int, int]:
    """Four panels over steps from a run's ``metrics.jsonl`` records: per-objective loss (and held-out
    loss), gradient cosine per pair, clip activity, and the dual."""
    fig, axes = _figure(TRAINING_PIXELS, 2, 2)
    _loss_panel(axes[0][0], records, objectives)
    _cosine_panel(axes[0][1], records)
    _clip_panel(axes[1][0], records)
    _dual_panel(axes[1][1], records, objectives)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
