"""SIGKILL at any moment, then --resume: the run ends exactly as an uninterrupted one, for one
preset of every task kind (the checkpoint is atomic and holds the whole state: weights,
optimizer, schedules, the task's generator, every RNG, the carried state and the position)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from rnnreg.config import load_config
from rnnreg.runs.checkpoint import load_checkpoint
from rnnreg.runs.metrics import read_metrics
from rnnreg.runs.run_dir import RunDir, new_run_dir
from rnnreg.training.loop import train

from lm_fixtures import write_corpus
from preset_fixtures import tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
ONE_PER_KIND = ["awd-lstm-ptb", "adding-quick", "pmnist-quick", "grud-synthetic", "clockwork-generation",
                "seq2seq-copy", "ctc-synthetic"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def stable(path):
    return [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s", "examples_per_s")}
            for r in read_metrics(path) if r["kind"] != "event"]


def kill_after_first_checkpoint(args: list[str], run: RunDir, timeout: float = 120) -> None:
    """Start ``rnnreg train`` and SIGKILL it as soon as its first checkpoint is on disk."""
    proc = subprocess.Popen([sys.executable, "-m", "rnnreg", "train", "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not run.last.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.mark.parametrize("name", ONE_PER_KIND)
def test_sigkill_then_resume_matches_an_uninterrupted_run(name, corpus_dir, tmp_path):
    args = [name, *tiny_overrides(name, tmp_path / "killed", corpus_dir), "train.max_steps=60",
            "train.epochs=100", "train.checkpoint_every=2"]
    config = load_config(args[0], args[1:])
    reference = new_run_dir(tmp_path / "whole", config.name)
    reference.write_config(config)
    whole = train(config, reference)
    run = RunDir(tmp_path / "killed" / name)
    kill_after_first_checkpoint(args, run)
    killed_at = load_checkpoint(run.last)["state"]["step"]
    resumed = train(config, run, resume=True)
    assert killed_at < resumed["steps"] == whole["steps"]
    assert (resumed["valid"], resumed["test"]) == (whole["valid"], whole["test"])
    assert stable(run.metrics) == stable(reference.metrics)
    a, b = load_checkpoint(reference.best)["model"], load_checkpoint(run.best)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
