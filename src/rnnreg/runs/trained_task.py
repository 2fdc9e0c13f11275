"""A trained sequence-task model back from its run directory, with its task rebuilt from the config."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..tasks.build import build_task, build_task_model
from .checkpoint import load_checkpoint
from ..config import Config, apply_overrides, config_from_dict
from .run_dir import RunDir
from ..tasks.base import Task


@dataclass(frozen=True)
class TrainedTask:
    config: Config
    task: Task
    model: nn.Module


def load_trained_task(run: RunDir, *, which: str = "best", overrides: tuple[str, ...] = (),
                      device: str | torch.device = "cpu") -> TrainedTask:
    """The model of ``run`` with its best (``which="best"``) or latest (``"last"``) weights, in
    eval mode, and its task rebuilt from the stored config with ``overrides`` applied (e.g.
    ``data.path=...`` when the data moved, or ``task.beam_size=5`` to decode differently)."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    ckpt = load_checkpoint(run.best if which == "best" else run.last, map_location=device)
    config = config_from_dict(apply_overrides(ckpt["config"], overrides))
    task = build_task(config)
    model = build_task_model(config, task).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return TrainedTask(config, task, model)
