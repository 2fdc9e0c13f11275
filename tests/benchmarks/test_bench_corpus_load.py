"""Smoke test of benchmarks/bench_corpus_load.py at a tiny scale: every load of both corpora prints a
JSON line, the loaders agree on what they read, and the second load reads the id cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each load runs in its own subprocess

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_corpus_load.py"


def test_a_tiny_run_prints_every_load_and_the_loaders_agree():
    done = subprocess.run([sys.executable, str(SCRIPT), "--scale", "0.0005", "--old"], check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    by = {(r["corpus"], r["mode"]): r for r in rows}
    corpora = {r["corpus"] for r in rows}
    assert len(corpora) == 2 and set(by) == {(c, m) for c in corpora for m in ("first", "second", "memory", "old")}
    for corpus in corpora:
        loads = [by[(corpus, mode)] for mode in ("first", "second", "memory", "old")]
        assert len({(tuple(r["tokens"]), r["vocab"]) for r in loads}) == 1, loads  # the same corpus each way
        assert all(r["wall_s"] >= 0 and r["max_rss_mib"] > 0 for r in loads)
        assert by[(corpus, "second")]["cache_mib"] > 0
