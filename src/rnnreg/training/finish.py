"""The end of a training run: score the best weights on the test split, let the task add its
extras (a language model's sample, MC-dropout validation, and its cache-pointer and dynamic
evaluation scores when ``[evaluation]`` asks), write the summary."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ..config import Config
from ..runs import RunDir
from ..runs.atomic_text import write_text_atomic
from ..runs.checkpoint import load_checkpoint
from ..runs.provenance import collect_provenance
from ..tasks.base import Task
from .distributed import Distributed
from .state import TrainingState


def finish_run(config: Config, run: RunDir, task: Task, model: nn.Module, state: TrainingState, status: str,
               dist: Distributed, device: torch.device, record: Callable[[dict], None], *,
               budget_spent: bool = False) -> dict:
    """Evaluate best.pt on the test split (``data.test_batch_size`` for a language model, 1 for
    AWD-LSTM; ``data.eval_batch_size`` for the other tasks), write ``sample.txt`` and
    ``summary.json``; return the summary. A stopped or failed run only records where it stood.

    The summary is written last, atomically: a "finished" one means the test record and the
    sample are on disk. A run killed before that resumes from its last checkpoint (``done``),
    which drops a test record already written (``TrainingState.records``) and runs this again,
    so the final records appear once.

    ``summary["provenance"]`` (:func:`rnnreg.runs.provenance.collect_provenance`) says which
    code, machine and data produced it, how the config differs from its preset, and whether
    ``budget_spent`` (the loop's step / time budget) or a stop request cut it short."""
    summary: dict[str, Any] = {
        "name": config.name, "task": config.task.kind, "description": task.describe(), "metric": task.metric,
        "higher_is_better": task.higher_is_better, "status": status,
        "epochs": state.epoch - 1 if state.position == 0 else state.epoch, "steps": state.step,
        "wall_s": round(state.elapsed, 1), "finetuned": state.stage == "finetune",
        "valid": _rounded(state.best_metric), "test": None,
        "params": sum(p.numel() for p in model.parameters())}
    # Rank 0 alone: this needs no other rank, and the others are done once it has the numbers.
    if status == "finished" and dist.is_main and run.best.exists():
        best = load_checkpoint(run.best, map_location=device)
        model.load_state_dict(best["model"])
        model.eval()
        summary["best_step"] = best["step"]  # which weights valid and test were scored from
        scores = task.evaluate(model, "test")
        summary["test"] = _rounded(scores[task.metric])
        summary["test_scores"] = {k: _rounded(v) for k, v in scores.items()}
        record({"kind": "eval", "step": state.step, "epoch": summary["epochs"], "split": "test", **scores,
                "averaged": False, "time": state.elapsed})
        extras = task.finish(model, seed=config.train.seed)
        for key, value in extras.items():  # valid_mc, valid_cache / test_cache / cache (its settings), ...
            if key != "sample":
                summary[key] = _rounded(value) if isinstance(value, float) else value
        if "sample" in extras:
            summary["sample"] = extras["sample"]
            write_text_atomic(run.sample, extras["sample"] + "\n")
    if dist.is_main:
        summary["provenance"] = collect_provenance(
            config, task=task, status=status, epochs=summary["epochs"], steps=state.step, wall_s=state.elapsed,
            device=device, budget_spent=budget_spent)
        run.write_summary({k: v for k, v in summary.items() if k != "sample"})
    return summary


def _rounded(value: float | None) -> float | None:
    """Six significant digits: enough for a perplexity and for an MSE of 1e-4 alike."""
    return None if value is None or not math.isfinite(value) else float(f"{float(value):.6g}")
