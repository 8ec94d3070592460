"""Every metric raco logs, named by one scheme (torch-free; documented in docs/metrics.md).

    <metric>                   a step-wide value: loss, grad_norm, learning_rate, tokens, ...
    <objective>/<metric>       a value of one objective: <objective>/loss, <objective>/rewards/margins, ...
    <a>|<b>/<metric>           a value of a pair of objectives: <a>|<b>/grad_cosine
    eval/<any of the above>    the same quantity on held-out rows

The part after the scope keeps TRL's DPOTrainer names (``rewards/chosen``, ``rewards/accuracies``,
``loss``, ``grad_norm``, ``learning_rate``), so a k = 1 run reads as a TRL run with the objective's name
in front. Code builds keys only through :func:`objective_key`, :func:`pair_key` and :func:`eval_key`,
and :data:`METRICS` lists every metric with its meaning: ``tests/training/test_metric_keys.py`` checks that a
run logs nothing this table does not describe and that docs/metrics.md shows the whole table.
"""

from __future__ import annotations

from typing import NamedTuple

EVAL = "eval"


class Metric(NamedTuple):
    """One documented metric: its ``scope`` (step, objective, pair, eval-step, eval-objective), its
    name after the scope, and what it is."""

    scope: str
    name: str
    meaning: str

    @property
    def pattern(self) -> str:
        """The key as written in docs/metrics.md (``<objective>`` etc. standing for names)."""
        scoped = {
            "step": self.name,
            "objective": f"<objective>/{self.name}",
            "pair": f"<a>|<b>/{self.name}",
            "eval-step": f"{EVAL}/{self.name}",
            "eval-objective": f"{EVAL}/<objective>/{self.name}",
        }
        return scoped[self.scope]


METRICS: tuple[Metric, ...] = (
    Metric("step", "loss", "Σ_i w_i L_i, the weighted loss of the step (mgda, which ignores w: the mean)"),
    Metric("step", "grad_norm", "‖update‖ before clipping to train.max_grad_norm (NaN on a skipped step)"),
    Metric("step", "learning_rate", "the scheduler's learning rate of the step"),
    Metric("step", "loss_scale", "float16 dynamic loss scale (float16 runs only)"),
    Metric("step", "tokens", "non-padding tokens of the step's global batch"),
    Metric("step", "tokens_per_second", "tokens / wall seconds of the step, all processes together"),
    Metric("step", "skipped", "1 if the step was skipped (non-finite gradients), else 0"),
    Metric("step", "clip_active", "1 if RACO's clipping changed the CAGrad coefficients, else 0"),
    Metric("step", "pareto_measure", "min_{p ∈ simplex} ‖Σ p_i g_i‖², 0 at a Pareto-critical point"),
    Metric("objective", "loss", "L_i, the objective's preference loss on the step's batch"),
    Metric("objective", "coef", "a_i, the objective's coefficient in the update Σ a_i g_i"),
    Metric("objective", "grad_norm", "‖g_i‖, the norm of the objective's gradient"),
    Metric("objective", "dual", "p_i, the objective's entry of the CAGrad/RACO dual solution"),
    Metric("objective", "rewards/chosen", "mean implicit reward of the preferred responses (rows s_i ≠ 0)"),
    Metric("objective", "rewards/rejected", "mean implicit reward of the other responses"),
    Metric("objective", "rewards/margins", "mean of chosen − rejected implicit rewards"),
    Metric("objective", "rewards/accuracies", "share of rows whose preferred response has the higher reward"),
    Metric("pair", "grad_cosine", "cos(g_a, g_b), the cosine of two objectives' gradients"),
    Metric("eval-objective", "loss", "L_i over every held-out row with s_i ≠ 0"),
    Metric("eval-objective", "rewards/accuracies", "held-out accuracy; ties count half (start: 0.5)"),
    Metric("eval-objective", "rewards/margins", "mean held-out lead β·s_i·(r¹ − r²) of the preferred one"),
    Metric("eval-objective", "pairs", "held-out pairs with s_i ≠ 0 (the n of the three above)"),
    Metric("eval-objective", "score", "mean scorer value of answers to held-out prompts (eval.objectives)"),
    Metric("eval-step", "weighted_accuracy", "Σ_i w_i · eval/<objective>/rewards/accuracies"),
    Metric("eval-step", "mean_accuracy", "mean of eval/<objective>/rewards/accuracies (mgda: not steered)"),
)

# Keys of raco 0.1 before this scheme, for the changelog and for readers of old metrics.jsonl files.
RENAMED = {
    "loss/<objective>": "<objective>/loss",
    "coef/<objective>": "<objective>/coef",
    "grad_norm/<objective>": "<objective>/grad_norm",
    "dual/<objective>": "<objective>/dual",
    "grad_cosine/<a>|<b>": "<a>|<b>/grad_cosine",
    "lr": "learning_rate",
    "rewards/* (k = 1)": "<objective>/rewards/*",
}


def objective_key(objective: str, metric: str) -> str:
    """``<objective>/<metric>``, e.g. ``helpful/rewards/accuracies``."""
    return f"{objective}/{metric}"


def pair_key(first: str, second: str, metric: str) -> str:
    """``<first>|<second>/<metric>``, e.g. ``helpful|harmless/grad_cosine``."""
    return f"{first}|{second}/{metric}"


def eval_key(key: str) -> str:
    """The held-out counterpart of ``key``: ``eval/<key>``."""
    return f"{EVAL}/{key}"


def describe(key: str, objectives: tuple[str, ...] | list[str]) -> Metric | None:
    """The :data:`METRICS` entry that ``key`` is an instance of, for a run with ``objectives``; None if
    the key is not documented."""
    evaluated = key.startswith(f"{EVAL}/")
    rest = key[len(EVAL) + 1 :] if evaluated else key
    scope, name = "step", rest
    for objective in objectives:
        if rest.startswith(f"{objective}/"):
            scope, name = "objective", rest[len(objective) + 1 :]
            break
    else:
        for a in objectives:
            for b in objectives:
                if a != b and rest.startswith(f"{a}|{b}/"):
                    scope, name = "pair", rest[len(a) + len(b) + 2 :]
    if evaluated:
        scope = f"{EVAL}-{scope}"
    return next((m for m in METRICS if m.scope == scope and m.name == name), None)
