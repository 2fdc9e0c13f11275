"""The sequence-task loop: it learns, writes its run, resumes bit for bit, and adds the penalties."""

from __future__ import annotations

import pytest
import torch

from rnnreg.runs.checkpoint import load_checkpoint
from rnnreg.config import apply_overrides, config_from_dict
from rnnreg.runs.metrics import read_metrics
from rnnreg.runs.run_dir import new_run_dir
from rnnreg.training.loop import train

from task_fixtures import SignOfSumTask

pytestmark = pytest.mark.slow  # trains models or starts processes

VOLATILE = ("time", "examples_per_s")
TINY = ["task.kind=adding", "model.cell=lstm", "model.hidden_size=16", "model.num_layers=1",
        "data.batch_size=32", "data.eval_batch_size=64", "optim.optimizer=adam", "optim.lr=0.02",
        "optim.weight_decay=0.0", "optim.clip=1.0", "train.log_every=1", "train.threads=1"]


def config_for(tmp_path, *extra):
    """Schema defaults (no preset's penalties or schedules) plus the tiny settings."""
    return config_from_dict(apply_overrides({"name": "toy"}, [*TINY, f"train.out_dir={tmp_path}", *extra]))


def run_training(config, run=None, **kw):
    if run is None:
        run = new_run_dir(config.train.out_dir, config.name)
        run.write_config(config)
    return run, train(config, run, task=SignOfSumTask(), **kw)


def stable(records):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def test_task_training_learns_and_writes_the_run(tmp_path):
    run, summary = run_training(config_for(tmp_path, "train.epochs=4"))
    assert summary["status"] == "finished" and summary["metric"] == "accuracy"
    assert summary["valid"] > 75 and summary["test"] > 75          # chance is 50%
    for path in (run.config, run.metrics, run.summary, run.best, run.last):
        assert path.is_file(), path
    records = read_metrics(run.metrics)
    steps = [r for r in records if r["kind"] == "step"]
    assert len(steps) == 4 * 8 and steps[-1]["loss"] < steps[0]["loss"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["split"] for r in evals] == ["valid"] * 4 + ["test"]
    assert max(r["accuracy"] for r in evals[:-1]) == pytest.approx(summary["valid"], rel=1e-6)
    assert load_checkpoint(run.best)["format"] == "rnnreg-weights"


def test_stopped_task_run_resumes_bit_for_bit(tmp_path):
    config = config_for(tmp_path, "train.epochs=2", "model.zoneout_h_p=0.1", "model.output_p=0.2")
    whole_run, whole = run_training(config)
    calls = {"n": 0}

    def stop_after_11():
        calls["n"] += 1
        return calls["n"] == 11                                      # mid-way through epoch 2

    part_run, stopped = run_training(config, stop_requested=stop_after_11)
    assert stopped["status"] == "stopped" and stopped["steps"] == 11
    _, resumed = run_training(config, run=part_run, resume=True)
    assert (resumed["valid"], resumed["test"], resumed["steps"]) == (whole["valid"], whole["test"], whole["steps"])
    part, full = stable(read_metrics(part_run.metrics)), stable(read_metrics(whole_run.metrics))
    stop_event = next(i for i, r in enumerate(part) if r["kind"] == "event")
    assert part.pop(stop_event)["message"].startswith("stop requested") and part == full
    a, b = load_checkpoint(whole_run.best)["model"], load_checkpoint(part_run.best)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("extra", [
    ("penalties.norm_stabilizer=1.0",),
    ("penalties.norm_stabilizer=1.0", "penalties.norm_stabilizer_on=cell"),
    ("penalties.ar=1.0", "penalties.tar=1.0", "penalties.l2=1e-4"),
])
def test_penalties_are_logged_apart_from_the_task_loss(tmp_path, extra):
    run, summary = run_training(config_for(tmp_path, "train.max_steps=3", *extra))
    steps = [r for r in read_metrics(run.metrics) if r["kind"] == "step"]
    assert summary["steps"] == 3 and len(steps) == 3
    logged = steps[0]["penalties"]
    on = {"norm_stabilizer": "penalties.norm_stabilizer=1.0" in extra, "ar": "penalties.ar=1.0" in extra,
          "tar": "penalties.ar=1.0" in extra, "weight": "penalties.l2=1e-4" in extra}
    assert {k: logged[k] > 0 for k in on} == on


def test_nan_loss_rolls_back_and_stop_policy_fails_cleanly(tmp_path, monkeypatch):
    task = SignOfSumTask()
    real = task.loss
    monkeypatch.setattr(task, "loss", lambda out, batch: real(out, batch) * float("nan"))
    config = config_for(tmp_path, "train.nan_policy=stop")
    run = new_run_dir(config.train.out_dir, config.name)
    summary = train(config, run, task=task)
    assert summary["status"] == "failed" and summary["steps"] == 0
    assert any("non-finite" in r.get("message", "") for r in read_metrics(run.metrics))


def test_a_task_finetunes_from_its_best_weights_like_a_language_model(tmp_path):
    """The finetune stage (AWD-LSTM's finetune.py) is the loop's, so every task has it."""
    run, summary = run_training(config_for(tmp_path, "train.epochs=1", "train.finetune_epochs=2"))
    events = [r["message"] for r in read_metrics(run.metrics) if r["kind"] == "event"]
    assert any("finetune stage" in m for m in events)
    assert summary["finetuned"] and summary["epochs"] == 3 and summary["status"] == "finished"
    assert load_checkpoint(run.last)["optimizer"]["nt_asgd"]["averaging"] is True
