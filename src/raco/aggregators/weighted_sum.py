"""Linear scalarisation (DPO-LW): d = Σ w_i g_i."""

from __future__ import annotations

import torch

from raco.aggregators._checks import check_gram, check_weights, to_output
from raco.aggregators._types import Aggregation


def weighted_sum(gram: torch.Tensor, weights: torch.Tensor) -> Aggregation:
    """Linear scalarisation: a = w, so d = g_0 = Σ w_i g_i.

    The baseline every multi-objective DPO paper compares with (DPO-LW; Zhou et al. 2024,
    "Beyond one-preference-fits-all"). The Gram matrix is only validated.
    """
    h = check_gram(gram)
    return Aggregation(coefficients=to_output(check_weights(weights, h.shape[0]), gram))
