"""float16 mixed precision: float32 master weights, float16 autocast, dynamic loss scaling.

``model.dtype: float16`` keeps the trainable weights (and AdamW's state) in float32 and runs the
forward passes under ``torch.autocast(dtype=float16)`` (Micikevicius et al., "Mixed Precision
Training", ICLR 2018). Activation gradients in float16 underflow unless the backward pass is seeded
with a large factor S, so the gradient engine multiplies its backward seeds by S and divides the
float32 per-objective gradients by S as soon as they are formed (``GradientEngine.accumulate(...,
loss_scale=S)``). torch's ``GradScaler`` cannot be used as is: it unscales ``.grad`` at
``optimizer.step``, whereas our engine forms (and checks) the per-objective gradients itself. Its
dynamic rule is reproduced exactly: start at 2¹⁶; on a non-finite gradient skip the step and halve S;
after 2000 finite steps in a row double S.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch


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
    """``float16`` means mixed precision (float32 weights); float32 and bfloat16 weights are as named."""
    return dtype == "float16"


def autocast(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to float16 for mixed-precision runs, else a no-op context."""
    if not uses_mixed_float16(dtype):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)
