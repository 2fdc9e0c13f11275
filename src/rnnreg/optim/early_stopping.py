"""Early stopping on the validation loss."""

from __future__ import annotations

import math
from typing import Any

from ._validate import check_float, check_int


class EarlyStopping:
    """Stop once the validation loss has gone ``patience`` consecutive epochs without beating
    the best so far by more than ``min_delta``. A NaN loss counts as no improvement.

    Args:
        patience: epochs without improvement after which :meth:`update` returns True (>= 1).
        min_delta: the margin (>= 0) a loss must beat ``best`` by to count as an improvement.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = check_int("patience", patience, 1)
        self.min_delta = check_float("min_delta", min_delta, 0.0)
        self.best = math.inf
        self.bad_epochs = 0

    def update(self, val_loss: float) -> bool:
        """Record one epoch's validation loss; return True when training should stop."""
        v = float(val_loss)
        if v < self.best - self.min_delta:
            self.best, self.bad_epochs = v, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Settings, best loss and the count of epochs without improvement."""
        return {"patience": self.patience, "min_delta": self.min_delta, "best": self.best,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.patience, self.min_delta = state["patience"], state["min_delta"]
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
