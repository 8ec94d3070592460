"""Per-objective preference losses (dpo, ipo, hinge, simpo, amopo) and sequence log-prob extraction."""

from raco.losses.logps import response_logps, sequence_logps
from raco.losses.pairwise import (
    LOSSES,
    NORMALIZATIONS,
    REFERENCE_FREE,
    ObjectiveSpec,
    PairLogps,
    amopo_loss,
    count_nonzero_signs,
    dpo_loss,
    hinge_loss,
    implicit_rewards,
    ipo_loss,
    loss_denominators,
    objective_losses,
    objective_metrics,
    simpo_loss,
)

__all__ = [
    "LOSSES",
    "NORMALIZATIONS",
    "REFERENCE_FREE",
    "ObjectiveSpec",
    "PairLogps",
    "amopo_loss",
    "count_nonzero_signs",
    "dpo_loss",
    "hinge_loss",
    "implicit_rewards",
    "ipo_loss",
    "loss_denominators",
    "objective_losses",
    "objective_metrics",
    "response_logps",
    "sequence_logps",
    "simpo_loss",
]
