"""Epoch-level learning-rate schedules.

Every schedule has ``epoch_end(epoch, val_loss=None)``, called once after each epoch with the
1-based number of the epoch just finished, plus ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ._validate import check_choice, check_float, check_int

SCHEDULES = ("none", "zaremba", "plateau", "milestones")


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


class MilestoneDecay:
    """The learning rate times ``factor`` after each epoch listed in ``milestones``: awd-lstm-lm's
    ``--when`` (divide by 10 at the given epochs), which Merity et al. (2018, "An analysis of neural
    language modeling at multiple scales") use with Adam on enwik8, char-PTB and WikiText-103.

    Closed form, ``lr0 * factor ** (number of milestones <= epoch)``, so a resumed or repeated
    epoch never compounds the decay.
    """

    def __init__(self, optimizer: Optimizer, *, factor: float, milestones: tuple[int, ...]) -> None:
        self.optimizer = optimizer
        self.factor = check_float("factor", factor, 0.0, 1.0, low_open=True)
        self.milestones = tuple(check_int("milestone", m, 1) for m in milestones)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be increasing epochs, got {list(milestones)}")
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]

    def epoch_end(self, epoch: int, val_loss: float | None = None) -> None:
        """Set the learning rate for epoch ``epoch + 1``. ``val_loss`` is ignored."""
        passed = sum(m <= check_int("epoch", epoch, 1) for m in self.milestones)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.factor ** passed

    def state_dict(self) -> dict[str, Any]:
        """Settings and initial rates."""
        return {"factor": self.factor, "milestones": list(self.milestones), "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.factor, self.milestones = state["factor"], tuple(state["milestones"])
        self.base_lrs = list(state["base_lrs"])


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


def build_scheduler(kind: str, optimizer: Optimizer, *, factor: float, start_epoch: int, patience: int,
                    milestones: tuple[int, ...] = ()) -> ZarembaDecay | ConstantSchedule | PlateauSchedule | MilestoneDecay:
    """The schedule ``kind`` ("none", "zaremba", "plateau" or "milestones") for ``optimizer``.
    ``factor`` is the decay factor of all but "none"; ``start_epoch`` is used by "zaremba",
    ``patience`` by "plateau", ``milestones`` by "milestones"; arguments a kind does not use are
    ignored (not validated)."""
    check_choice("kind", kind, SCHEDULES)
    if kind == "milestones":
        return MilestoneDecay(optimizer, factor=factor, milestones=milestones)
    if kind == "zaremba":
        return ZarembaDecay(optimizer, factor=factor, start_epoch=start_epoch)
    if kind == "plateau":
        return PlateauSchedule(optimizer, factor=factor, patience=patience)
    return ConstantSchedule()
