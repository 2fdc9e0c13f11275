"""The end of a training run: test the best weights, sample from them, write the summary."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..runs.checkpoint import load_checkpoint
from ..config import Config
from ..data import Corpus, batchify
from .distributed import Distributed
from ..tasks.lm_evaluation import evaluate, evaluate_mc
from ..runs.metrics import metric_fields, metric_value
from ..runs.atomic_text import write_text_atomic
from ..runs.run_dir import RunDir
from ..tasks.text_sampling import sample_text
from .state import TrainingState


def finish_run(config: Config, run: RunDir, corpus: Corpus, model: nn.Module, metric: str,
               state: TrainingState, status: str, dist: Distributed, device: torch.device,
               record: Callable[[dict], None]) -> dict:
    """Evaluate best.pt on the test split (``data.test_batch_size``, 1 for AWD-LSTM), optionally
    with MC dropout on validation, write ``sample.txt`` and ``summary.json``; return the summary.
    A stopped or failed run only records where it stood."""
    summary = {"name": config.name, "dataset": corpus.name, "metric": metric, "status": status,
               "epochs": state.epoch - 1 if state.position == 0 else state.epoch, "steps": state.step,
               "wall_s": round(state.elapsed, 1), "finetuned": state.stage == "finetune",
               "valid": _value(state.best_valid, metric), "test": None,
               "params": sum(p.numel() for p in model.parameters())}
    # Rank 0 alone: these need no other rank, and the others are done once it has the numbers.
    if status == "finished" and dist.is_main and run.best.exists():
        model.load_state_dict(load_checkpoint(run.best, map_location=device)["model"])
        test_data = batchify(corpus.test, config.data.test_batch_size).to(device)  # (N, B)
        test_loss = evaluate(model, test_data, config.data.bptt)
        summary["test"] = _value(test_loss, metric)
        record({"kind": "eval", "step": state.step, "epoch": summary["epochs"], "split": "test",
                **metric_fields(test_loss, metric), "averaged": False, "time": state.elapsed})
        if config.train.mc_samples:
            valid_data = batchify(corpus.valid, config.data.eval_batch_size).to(device)  # (N, B)
            mc_loss = evaluate_mc(model, valid_data, config.data.bptt, config.train.mc_samples)
            summary["valid_mc"] = _value(mc_loss, metric)
        if config.train.sample_length:
            summary["sample"] = sample_text(model, corpus.vocab, corpus.level, prime=config.train.sample_prime,
                                            length=config.train.sample_length,
                                            temperature=config.train.sample_temperature,
                                            seed=config.train.seed, dataset=corpus.name)
            write_text_atomic(run.sample, summary["sample"] + "\n")
    if dist.is_main:
        run.write_summary({k: v for k, v in summary.items() if k != "sample"})
    return summary


def _value(loss: float, metric: str) -> float | None:
    return None if not math.isfinite(loss) else round(metric_value(loss, metric), 4)
