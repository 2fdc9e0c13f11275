"""Epoch-level learning-rate schedules.

Every schedule has ``epoch_end(epoch, val_loss=None)``, called once after each epoch with the
1-based number of the epoch just finished, plus ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ._validate import check_choice, check_float, check_int

SCHEDULES = ("none", "zaremba", "plateau")


class ZarembaDecay:
    """Zaremba, Sutskever & Vinyals (2014), "Recurrent Neural Network Regularization", sec. 4.1:
    the learning rate stays at its initial value for the first ``start_epoch`` epochs, then is
    multiplied by ``factor`` after each epoch. The paper's settings: small model lr 1, factor
    0.5 after epoch 4; medium factor 1/1.2 after epoch 6; large factor 1/1.15 after epoch 14.

    The rate for the epoch after ``epoch`` is computed in closed form,
    ``lr0 * factor ** max(0, epoch - start_epoch + 1)``, so repeating or resuming an epoch never
    compounds the decay. ``lr0`` is each group's lr when the schedule is built.
    """

    def __init__(self, optimizer: Optimizer, *, factor: float, start_epoch: int) -> None:
        self.optimizer = optimizer
        self.factor = check_float("factor", factor, 0.0, 1.0, low_open=True)
        self.start_epoch = check_int("start_epoch", start_epoch, 0)
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.last_epoch = 0

    def epoch_end(self, epoch: int, val_loss: float | None = None) -> None:
        """Set the learning rate for epoch ``epoch + 1``. ``val_loss`` is ignored."""
        self.last_epoch = check_int("epoch", epoch, 1)
        scale = self.factor ** max(0, epoch - self.start_epoch + 1)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale

    def state_dict(self) -> dict[str, Any]:
        """Settings, initial rates and the last epoch seen."""
        return {"factor": self.factor, "start_epoch": self.start_epoch,
                "base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.factor = state["factor"]
        self.start_epoch = state["start_epoch"]
        self.base_lrs = list(state["base_lrs"])
        self.last_epoch = state["last_epoch"]


class ConstantSchedule:
    """The "none" schedule: the learning rate is left alone."""

    def epoch_end(self, epoch: int, val_loss: float | None = None) -> None:
        """Do nothing."""

    def state_dict(self) -> dict[str, Any]:
        """An empty state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


class PlateauSchedule:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode "min") behind ``epoch_end``: the rate
    is multiplied by ``factor`` once the validation loss has not improved for ``patience``
    epochs."""

    def __init__(self, optimizer: Optimizer, *, factor: float, patience: int) -> None:
        factor = check_float("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
        patience = check_int("patience", patience, 0)
        self.scheduler = ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)

    def epoch_end(self, epoch: int, val_loss: float | None = None) -> None:
        """Feed ``val_loss`` (required) to the plateau detector."""
        if val_loss is None:
            raise ValueError("val_loss is required by the 'plateau' schedule")
        self.scheduler.step(float(val_loss))

    def state_dict(self) -> dict[str, Any]:
        """The wrapped scheduler's state."""
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the wrapped scheduler's state."""
        self.scheduler.load_state_dict(state)


def build_scheduler(kind: str, optimizer: Optimizer, *, factor: float, start_epoch: int,
                    patience: int) -> ZarembaDecay | ConstantSchedule | PlateauSchedule:
    """The schedule ``kind`` ("none", "zaremba" or "plateau") for ``optimizer``. ``factor`` is
    the decay factor of "zaremba" and "plateau"; ``start_epoch`` is used by "zaremba",
    ``patience`` by "plateau"; arguments a kind does not use are ignored (not validated)."""
    check_choice("kind", kind, SCHEDULES)
    if kind == "zaremba":
        return ZarembaDecay(optimizer, factor=factor, start_epoch=start_epoch)
    if kind == "plateau":
        return PlateauSchedule(optimizer, factor=factor, patience=patience)
    return ConstantSchedule()
