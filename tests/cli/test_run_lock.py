"""One process per run directory: a second `rnnreg train --resume` on a run in progress is
refused in one line (exit 2) and the first run loses nothing; a killed holder leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from rnnreg.runs.lock import RunLock, RunLocked
from rnnreg.runs.metrics import read_metrics

from lm_fixtures import TINY, write_corpus


def test_a_held_run_directory_is_refused_naming_the_holder(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLocked, match=rf"{tmp_path} is in use by .*pid {os.getpid()} on "):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()             # released at the end of the block


@pytest.mark.slow
def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rnnreg.runs.lock import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {holder.pid} "):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    RunLock(tmp_path).acquire().release()             # the kernel dropped the lock with the process


@pytest.mark.slow
def test_resume_while_the_run_trains_is_refused_and_loses_nothing(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    run = tmp_path / "runs" / "awd-lstm-ptb"
    first = subprocess.Popen(
        [sys.executable, "-m", "rnnreg", "train", "--quiet", "awd-lstm-ptb", f"data.dataset={corpus}",
         f"train.out_dir={tmp_path / 'runs'}", *TINY, "train.epochs=1000", "train.checkpoint_every=5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists():          # training, past its first checkpoint
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.01)
        second = subprocess.run([sys.executable, "-m", "rnnreg", "train", "--resume", str(run), "--quiet"],
                                capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second one tried"
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and "is in use by" in second.stderr
        assert f"pid {first.pid} " in second.stderr and second.stdout == ""
    finally:
        first.send_signal(signal.SIGINT)               # checkpoint and stop
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "step"]
    assert len(steps) > 5 and steps == list(range(1, steps[-1] + 1))   # every step, once, in order
