"""Smoke test of benchmarks/bench_softmax.py: a --quick run prints a complete JSON line. Speed is
not asserted: a 2,000-word vocabulary at size 16 measures nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the script, which starts a process per contender

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_softmax.py"
KEYS = {"vocab_name", "vocab", "cutoffs", "full_tokens_per_s", "adaptive_tokens_per_s", "ratio",
        "full_step_mib", "adaptive_step_mib", "full_params", "adaptive_params", "peak_gflops", "peak_by", "threads", "quick"}


def test_quick_run_prints_a_complete_record():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], check=False, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 1 and KEYS <= rows[0].keys(), rows
    row = rows[0]
    assert row["ratio"] > 0 and row["full_step_mib"] >= 0 and row["threads"] == 1 and row["quick"] is True
    # the adaptive softmax's tail projections (div_value 1, tied) add E x E per cluster: 2 x 16 x 16,
    # and its head adds one vector and bias per cluster, but no V x E decoder beyond the tied one
    assert row["full_params"] != row["adaptive_params"]
    assert "speed-up" in done.stderr


def test_unknown_vocabulary_is_refused():
    done = subprocess.run([sys.executable, str(SCRIPT), "--vocabs", "nope"], check=False, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "nope" in done.stderr
