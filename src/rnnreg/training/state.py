"""Where a training run stands: the counters a checkpoint must hold to resume exactly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class TrainingState:
    """Mutable by design: the loop advances it; ``as_dict`` / ``from_dict`` carry it in checkpoints.

    ``position`` is where the task's next batch starts in the epoch (0 at an epoch's start: a
    batch index, or a language model's row); with the task's own state (the BPTT generator) and
    the carried hidden state it pins the data stream exactly. ``elapsed`` is training time so far
    (seconds, validations excluded), summed across resumes. ``best_metric`` is the best validation
    value of the task's metric (None before the first), in the metric's own direction.

    ``start_loss`` is the first step's loss (the mean over ranks), which ``train.divergence_factor``
    compares later losses with. ``records`` counts the metrics records written so far: a resume
    keeps exactly that many, so whatever was logged after the checkpoint (an end-of-epoch
    validation, the final test record of a run killed while it drew its sample) is logged once.
    ``done`` in a checkpoint means training is over and only the final evaluation remains.
    """
    stage: str = "train"               # train | finetune
    epoch: int = 1                     # the epoch in progress (1-based, counted across stages)
    stage_epoch: int = 1
    step: int = 0                      # optimizer steps taken
    position: int = 0
    best_metric: float | None = None
    best_step: int = 0
    validations: int = 0
    nan_recoveries: int = 0
    elapsed: float = 0.0
    epoch_loss: float = 0.0            # the task's loss summed over this epoch's tokens or examples
    epoch_count: int = 0               # ... and their number (task.count), for the epoch's mean
    done: bool = False
    start_loss: float | None = None
    records: int | None = 0            # None: a checkpoint from before records were counted

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"records": None, **{k: v for k, v in values.items() if k in names}})

    def next_epoch(self) -> None:
        self.epoch += 1
        self.stage_epoch += 1
        self.position = 0
        self.epoch_loss, self.epoch_count = 0.0, 0
