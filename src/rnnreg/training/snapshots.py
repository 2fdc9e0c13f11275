"""An in-memory copy of the model and optimizer, taken after each good validation, so a
non-finite loss can roll the run back instead of poisoning it."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn
from torch.optim import Optimizer


@dataclass(frozen=True)
class Snapshot:
    model: dict
    optimizer: dict

    @classmethod
    def take(cls, model: nn.Module, optimizer: Optimizer) -> "Snapshot":
        # deepcopy, not state_dict() alone: state dicts share storage with the live tensors.
        return cls(copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))

    def restore(self, model: nn.Module, optimizer: Optimizer) -> None:
        model.load_state_dict(self.model)
        optimizer.load_state_dict(copy.deepcopy(self.optimizer))
