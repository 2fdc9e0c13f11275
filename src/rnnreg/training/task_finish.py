"""The end of a sequence-task run: score the best weights on the test split, write the summary."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..runs.checkpoint import load_checkpoint
from ..config import Config
from ..runs.run_dir import RunDir
from ..tasks.base import Task, on_device
from .state import TrainingState


def objective(task: Task, scores: dict[str, float]) -> float:
    """The number the run minimises when it picks its best weights: the task's headline metric,
    negated where higher is better (accuracy), so a smaller objective is always better."""
    value = float(scores[task.metric])
    return -value if task.higher_is_better else value


def metric_of(task: Task, goal: float) -> float | None:
    """The headline metric back from an objective (None before any validation)."""
    if not math.isfinite(goal):
        return None
    return round(-goal if task.higher_is_better else goal, 6)


def finish_task_run(config: Config, run: RunDir, task: Task, model: nn.Module, state: TrainingState,
                    status: str, device: torch.device, record: Callable[[dict], None]) -> dict:
    """Score best.pt on the test split and write ``summary.json``; return the summary. A stopped
    or failed run only records where it stood."""
    summary = {"name": config.name, "task": config.task.kind, "description": task.describe(),
               "metric": task.metric, "higher_is_better": task.higher_is_better, "status": status,
               "epochs": state.epoch - 1 if state.position == 0 else state.epoch, "steps": state.step,
               "wall_s": round(state.elapsed, 1), "valid": metric_of(task, state.best_valid), "test": None,
               "params": sum(p.numel() for p in model.parameters())}
    if status == "finished" and run.best.exists():
        model.load_state_dict(load_checkpoint(run.best, map_location=device)["model"])
        model.eval()
        scores = task.score(model, on_device(task.eval_batches("test", config.data.eval_batch_size), device))
        summary["test"] = round(float(scores[task.metric]), 6)
        summary["test_scores"] = {k: round(float(v), 6) for k, v in scores.items()}
        record({"kind": "eval", "step": state.step, "epoch": summary["epochs"], "split": "test", **scores,
                "averaged": False, "time": state.elapsed})
    run.write_summary(summary)
    return summary
