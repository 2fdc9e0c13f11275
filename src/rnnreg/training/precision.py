"""Mixed precision for the training step: ``train.precision`` = "fp32" | "bf16" | "fp16".

bf16 and fp16 run the forward pass under ``torch.autocast`` (Micikevicius et al. 2018): matrix
products in the low precision, the weights and the optimizer's state in float32 as the master
copy, the loss and the penalties in float32 (the loop upcasts them). fp16's narrow range needs
loss scaling: a ``torch.amp.GradScaler`` scales the loss before backward, unscales the gradients
before clipping, skips a step whose gradients overflowed and lowers its scale (an overflow is the
scaler's business, not a divergence, until the scale falls below 1: a gradient that is still not
finite then is a fault). Its state goes into every checkpoint, so a resume is exact.
Validation and test run in float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch

from ..config.schema import PRECISIONS
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and, for fp16, loss scaling for one run on ``device``."""

    def __init__(self, kind: str, device: torch.device) -> None:
        if kind not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {kind!r}")
        self.kind, self.device = kind, device
        self.scaler = torch.amp.GradScaler(device.type, enabled=kind == "fp16")

    def autocast(self) -> AbstractContextManager:
        """The forward pass's context: autocast to bf16 / fp16, or nothing for fp32."""
        return torch.autocast(self.device.type, dtype=_DTYPES.get(self.kind, torch.bfloat16),
                              enabled=self.kind != "fp32")

    @property
    def scaling(self) -> bool:
        """Whether gradients are loss-scaled (fp16): an overflow then skips the step."""
        return self.scaler.is_enabled()

    def skips_non_finite(self) -> bool:
        """Whether a non-finite gradient is the scaler's to skip: fp16 while its scale can still
        come down (>= 1). One that stays non-finite below that is a fault, not an overflow, and
        the loop treats it as it treats a NaN (rollback or stop)."""
        return self.scaling and self.scaler.get_scale() >= 1.0

    def fields(self) -> dict[str, float]:
        """For the step's log line: fp16's current loss scale (it halves at each skipped step)."""
        return {"loss_scale": self.scaler.get_scale()} if self.scaling else {}

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """The true gradients, before clipping measures them."""
        if self.scaling:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Step (fp16: unless the gradients overflowed) and update the scale."""
        if self.scaling:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def abandon(self) -> None:
        """A step the loop does not take (a rollback): the scaler forgets its unscaled gradients."""
        if self.scaling:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaling else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaling and state:
            self.scaler.load_state_dict(state)
