"""Every sequence-task preset through the CLI: train (tiny), eval, plot, report; resume; errors."""

from __future__ import annotations

import json

import pytest

from rnnreg.cli import main
from rnnreg.config import load_config, preset_names
from rnnreg.runs.metrics import read_metrics

from helpers import shared_data

TASK_PRESETS = [n for n in preset_names() if load_config(n).task.kind != "lm"]


def tiny_overrides(name: str, out) -> list[str]:
    """The preset's model family and regularizers at a size that trains in seconds."""
    config = load_config(name)
    kind, periods = config.task.kind, len(config.model.clockwork_periods)
    extra = [f"train.out_dir={out}", "train.max_steps=3", "train.max_minutes=0.0", "train.log_every=1",
             "train.threads=1", "train.epochs=1", "train.patience=0",
             f"model.hidden_size={4 * periods if periods else 8}", "data.batch_size=4", "data.eval_batch_size=8",
             "task.valid_size=8", "task.test_size=8"]
    if config.model.hidden_sizes:
        extra.append(f"model.hidden_sizes={[8] * len(config.model.hidden_sizes)}")
    if kind == "mnist":
        extra += [f"data.path={shared_data() / 'mnist'}", "task.train_size=64", "task.valid_size=8"]
    elif kind in ("adding", "missing", "seq2seq", "ctc"):
        extra += ["task.train_size=16"]
    if kind in ("adding", "missing"):
        extra += ["task.seq_len=12"]
    return extra


def buildable(name: str) -> bool:
    """TIMIT is licensed: its presets train only where the user has the corpus."""
    config = load_config(name)
    return not (config.task.kind == "ctc" and (config.data.dataset == "timit" or config.data.path))


@pytest.mark.parametrize("name", [n for n in TASK_PRESETS if buildable(n)])
def test_every_task_preset_trains_evaluates_and_plots(name, tmp_path, capsys):
    assert main(["train", "--quiet", name, *tiny_overrides(name, tmp_path)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / name
    summary = json.loads((run / "summary.json").read_text())
    metric = summary["metric"]
    assert summary["status"] == "finished" and summary["steps"] == 3 and summary["test"] is not None
    assert f"finished: valid {metric}" in out and f"rnnreg eval {run}" in out
    evals = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]
    assert evals[-1]["split"] == "test" and metric in evals[-1]
    assert main(["eval", str(run), "--split", "valid"]) == 0
    assert "valid: loss" in capsys.readouterr().out
    assert main(["plot", str(run), "--norm-steps", "20"]) == 0
    written = capsys.readouterr().out
    for png in ("curves.png", "lr.png", "hidden_norms.png"):
        assert (run / "plots" / png).stat().st_size > 1000, written


class StopAfter:
    """Stands in for the CLI's signal flag: reads False ``n`` times, then True (a SIGINT)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __getitem__(self, index: int) -> bool:
        self.n -= 1
        return self.n < 0


def test_stopped_task_run_resumes_from_the_cli(tmp_path, capsys, monkeypatch):
    import contextlib

    import rnnreg.cli.train_cmd as train_cmd

    args = ["train", "--quiet", "adding-quick", *tiny_overrides("adding-quick", tmp_path), "train.max_steps=8",
            "train.epochs=3"]
    monkeypatch.setattr(train_cmd, "_stop_on_signals", lambda: contextlib.nullcontext(StopAfter(5)))
    assert main(args) == 0
    run = tmp_path / "adding-quick"
    assert "resume with: rnnreg train --resume" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"
    monkeypatch.setattr(train_cmd, "_stop_on_signals", lambda: contextlib.nullcontext(StopAfter(10**6)))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["status"] == "finished" and resumed["steps"] == 8
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == list(range(1, 9))


def test_generate_refuses_a_task_run_and_settings_that_do_not_apply(tmp_path, capsys):
    assert main(["train", "--quiet", "adding-quick", *tiny_overrides("adding-quick", tmp_path)]) == 0
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "adding-quick")]) == 2
    assert "samples from language models" in capsys.readouterr().err
    # Overrides may follow options (argparse alone would stop the list at --quiet).
    assert main(["train", "adding-quick", "--quiet", "model.tie_weights=true", f"train.out_dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "apply to language models" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
