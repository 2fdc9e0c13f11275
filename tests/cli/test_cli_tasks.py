"""Sequence tasks through the CLI: stop and resume, generate refused, settings that do not apply.
(Every preset trains, resumes, evaluates and plots in tests/training/test_presets.py.)"""

from __future__ import annotations

import json

from rnnreg.cli import main
from rnnreg.runs.metrics import read_metrics

from preset_fixtures import tiny_overrides


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
    assert "model.tie_weights does not apply to task.kind = 'adding'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
