"""Smoke test of benchmarks/bench_lm.py: a --quick run prints complete JSON lines, and --out holds
the same records. Speed is not asserted: the tiny sizes measure nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs the benchmark script in a subprocess

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_lm.py"
KEYS = {"config", "preset", "candidate", "baseline", "tokens_per_s", "baseline_tokens_per_s", "ratio",
        "batch", "bptt", "vocab", "optimizer", "data", "repeats", "steps", "warmup", "threads", "torch",
        "quick"}
PAIRS = {("rnnreg", "plain"), ("rnnreg-noreg", "plain"), ("rnnreg", "rnnreg-noreg")}


def test_quick_run_prints_complete_records(tmp_path):
    out = tmp_path / "lm.jsonl"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows, done.stderr[-2000:]
    for row in rows:
        assert KEYS <= row.keys(), row
        assert row["ratio"] > 0 and row["tokens_per_s"] > 0 and row["baseline_tokens_per_s"] > 0, row
        assert row["quick"] is True and row["threads"] == 1, row
    # Every default configuration, each with the three comparisons, and the presets' optimizers.
    assert {(r["config"], r["candidate"], r["baseline"]) for r in rows} == \
        {(c, *p) for c in ("zaremba-medium", "awd-lstm") for p in PAIRS}
    optim = {r["config"]: r["optimizer"]["rnnreg"] for r in rows}
    assert optim == {"zaremba-medium": "sgd", "awd-lstm": "nt_asgd"}
    # The two throughputs of a comparison are the same contenders' as in the other comparisons.
    by_pair = {(r["config"], r["candidate"], r["baseline"]): r for r in rows}
    for config in ("zaremba-medium", "awd-lstm"):
        assert by_pair[(config, "rnnreg", "plain")]["tokens_per_s"] == \
            by_pair[(config, "rnnreg", "rnnreg-noreg")]["tokens_per_s"]
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert "ratio" in done.stderr  # the readable table


def test_unknown_config_is_refused():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--configs", "nope"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "nope" in done.stderr
