"""Mixed precision: float32 master weights, half-precision autocast, and float16's dynamic loss scale.

``model.dtype: bfloat16`` and ``model.dtype: float16`` keep the trainable weights, their gradients and
AdamW's state in float32 and run the forward passes under ``torch.autocast`` to the named dtype
(Micikevicius et al., "Mixed Precision Training", ICLR 2018; raco.models.loading.weights_dtype loads
the model in float32). Why not train half-precision weights directly: a weight w moves only if the
update exceeds half its ulp, 2^(⌊log₂|w|⌋ − 8) for bfloat16's 8 significant bits — about 3e-5 at
|w| ≈ 0.015 — while AdamW's updates at lr 7e-7 are about 7e-7, so nearly every step would round to
nothing. ``model.pure_bf16: true`` does exactly that (half the weight and optimizer memory): it is
lossy, and documented as such.

bfloat16 has float32's exponent range, so its gradients need no loss scaling. float16's activation
gradients underflow unless the backward pass is seeded with a large factor S, so the gradient engine
multiplies its backward seeds by S and divides the float32 per-objective gradients by S as soon as they
are formed (``GradientEngine.accumulate(..., loss_scale=S)``). torch's ``GradScaler`` cannot be used as
is: it unscales ``.grad`` at ``optimizer.step``, whereas our engine forms (and checks) the per-objective
gradients itself. Its dynamic rule is reproduced exactly: start at 2¹⁶; on a non-finite gradient skip
the step and halve S; after 2000 finite steps in a row double S.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
"""``model.dtype`` -> the dtype the forward passes are autocast to (float32: no autocast)."""


@dataclass
class DynamicLossScale:
    """The loss scale S and its growth tracker (saved in checkpoints for exact resume)."""

    enabled: bool = False
    scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    good_steps: int = 0

    @property
    def value(self) -> float:
        """The factor to seed backward passes with (1 when disabled)."""
        return self.scale if self.enabled else 1.0

    def overflow(self) -> None:
        """A step had non-finite gradients: shrink S and restart the growth count."""
        self.scale *= self.backoff_factor
        self.good_steps = 0

    def success(self) -> None:
        """A step was applied: grow S after ``growth_interval`` of them in a row."""
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= self.growth_factor
            self.good_steps = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def uses_mixed_float16(dtype: str) -> bool:
    """Whether ``model.dtype`` needs dynamic loss scaling: float16 only (bfloat16 has float32's range)."""
    return dtype == "float16"


def compute_dtype(dtype: str) -> torch.dtype:
    """The dtype the forward passes compute in for ``model.dtype`` (autocast's, or float32)."""
    return AUTOCAST_DTYPES.get(dtype, torch.float32)


def autocast(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 or float16 for ``model.dtype`` bfloat16/float16, else a no-op.

    With ``model.pure_bf16`` the weights are bfloat16 already; autocast then changes only the ops it
    keeps in float32 (softmax, norms' reductions), as Trainer's ``bf16`` does on a bfloat16 model."""
    if dtype not in AUTOCAST_DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[dtype])
