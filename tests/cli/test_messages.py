"""What the CLI says matches what happened: the bar counts tokens or sequences, an epoch a
budget cut short is not "done", a summary has no None, a failed run says why (under --quiet
too), and only commands that will work are suggested."""

from __future__ import annotations

import json

import pytest

import rnnreg
from rnnreg.cli import main
from rnnreg.cli.progress import ProgressBar
from rnnreg.cli.train_cmd import _print_summary

TINY = ["task.seq_len=8", "task.train_size=64", "task.valid_size=32", "task.test_size=32", "data.batch_size=16",
        "data.eval_batch_size=32", "model.hidden_size=4", "train.epochs=1", "train.max_minutes=0",
        "train.eval_every=0", "train.log_every=1", "train.threads=1"]


def _bar(unit: str, rows: int, batch_size: int, position: int = 0) -> ProgressBar:
    bar = ProgressBar(enabled=True)
    bar.on_start({"run": "runs/x", "params": 10, "task": "t", "epoch_size": rows, "unit": unit,
                  "batch_size": batch_size, "device": "cpu", "world_size": 1,
                  "metric": "bpc" if unit == "tokens" else "mse", "resumed_at_step": 0})
    bar.on_epoch_start(1, "train", rows, position)
    return bar


def test_a_language_model_bar_counts_tokens():
    bar = _bar("tokens", rows=101, batch_size=32)      # the last of 101 rows is only a target
    assert (bar.bar.unit, bar.bar.total) == ("tok", 100 * 32)
    bar.on_step(1, 50, 2.0, 1000.0)
    assert bar.bar.n == 50 * 32
    resumed = _bar("tokens", rows=101, batch_size=32, position=30)
    assert resumed.bar.n == 30 * 32


def test_a_task_bar_counts_sequences():
    bar = _bar("examples", rows=10, batch_size=64)
    assert (bar.bar.unit, bar.bar.total) == ("seq", 640)
    bar.on_step(1, 3, 0.5, 100.0)
    assert bar.bar.n == 192


@pytest.mark.parametrize("unit, rows, position, said", [
    ("tokens", 101, 100, "epoch 1 done"), ("tokens", 101, 42, "stopped by the budget at 42% of epoch 1"),
    ("examples", 10, 10, "epoch 1 done"), ("examples", 10, 9, "stopped by the budget at 90% of epoch 1")])
def test_an_epoch_cut_short_by_the_budget_is_not_done(capsys, unit, rows, position, said):
    bar = _bar(unit, rows=rows, batch_size=4)
    bar.on_step(1, position, 1.0, 1.0)
    bar.on_epoch_end(1, 1.0, 1.0)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(said + ":")


def test_the_cli_bar_says_where_the_budget_stopped(tmp_path, capsys):
    """The loop gives the bar the batch size and an epoch end after a budget stop (4 batches per
    epoch, 2 steps: half of it)."""
    rnnreg.train("adding-quick", tmp_path / "run", overrides=[*TINY, "train.max_steps=2"],
                 observer=ProgressBar(enabled=True))
    out = capsys.readouterr()
    assert "stopped by the budget at 50% of epoch 1" in out.out and "epoch 1 done" not in out.out
    assert "/64 [" in out.err and "seq/s" in out.err    # 4 batches of 16 sequences


def _summary(**changes) -> dict:
    return {"metric": "bpc", "task": "lm", "status": "finished", "steps": 7, "valid": None, "test": None,
            "test_scores": {"loss": 1.0, "ppl": None, "bpc": None}, **changes}


def test_a_summary_never_prints_none(tmp_path, capsys):
    _print_summary(_summary(status="stopped"), tmp_path, 60.0)
    out = capsys.readouterr().out
    assert "None" not in out
    assert "stopped: no validation score after 7 steps (1.0 min)" in out
    _print_summary(_summary(valid=1.5, test=1.6, valid_mc=1.55), tmp_path, 60.0)
    assert "finished: valid bpc 1.5, test bpc 1.6, MC-dropout valid bpc 1.55 after 7 steps" in capsys.readouterr().out


def test_only_commands_that_will_work_are_suggested(tmp_path, capsys):
    _print_summary(_summary(status="failed", steps=0), tmp_path, 1.0)        # nothing on disk
    out = capsys.readouterr().out
    assert "rnnreg eval" not in out and "rnnreg generate" not in out and "rnnreg plot" not in out
    (tmp_path / "last.pt").write_bytes(b"")
    _print_summary(_summary(status="stopped"), tmp_path, 1.0)
    out = capsys.readouterr().out
    assert f"rnnreg eval {tmp_path} --checkpoint last" in out and "generate" not in out
    assert f"rnnreg plot {tmp_path}" in out and f"resume with: rnnreg train --resume {tmp_path}" in out
    (tmp_path / "best.pt").write_bytes(b"")
    _print_summary(_summary(valid=1.5), tmp_path, 1.0)
    out = capsys.readouterr().out
    assert f"rnnreg eval {tmp_path} |" in out and f"rnnreg generate {tmp_path}" in out
    _print_summary(_summary(task="adding", metric="mse", valid=0.1), tmp_path, 1.0)
    assert "generate" not in capsys.readouterr().out


def test_a_failed_run_says_why(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"kind": "step", "step": 1, "loss": 1.0}) + "\n"
        + json.dumps({"kind": "event", "step": 1, "epoch": 1, "message": "non-finite loss at step 2: stopping"}) + "\n")
    _print_summary(_summary(status="failed", steps=1), tmp_path, 1.0)
    assert "why: non-finite loss at step 2: stopping" in capsys.readouterr().out


@pytest.mark.slow   # a short training run through the CLI
def test_quiet_still_says_why_a_run_failed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "adding-quick", "--quiet", *TINY, "optim.optimizer=sgd", "optim.lr=1e30",
                 "train.nan_policy=stop", "optim.clip=0"])
    out = capsys.readouterr().out
    assert code == 1
    why = next(line for line in out.splitlines() if line.startswith("why: "))
    assert "failed:" in out and ("non-finite" in why or "diverg" in why), why   # the event, under --quiet
    assert "rnnreg eval" not in out                     # it failed before any validation: no best.pt
