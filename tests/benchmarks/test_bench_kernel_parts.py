"""Smoke test of benchmarks/bench_kernel_parts.py: a --quick run prints well-formed JSON lines for
every part."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnreg.kernels import fast

pytestmark = [pytest.mark.slow,  # runs the benchmark script in a subprocess
              pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kernel_parts.py"


def test_quick_run_prints_every_part():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["part"] for r in rows} == {"products", "transpose", "dispatch", "allocator", "regularizers"}
    for row in rows:
        assert {"part", "case", "what", "us"} <= row.keys() and row["us"] > 0, row
    whats = {(r["part"], r["what"]) for r in rows}
    assert {("products", "torch.mm"), ("products", "onednn"), ("products", "onednn reordered"),
            ("transpose", "vector"), ("transpose", "scalar"), ("dispatch", "registered op"),
            ("dispatch", "eager route"), ("allocator", "torch.nn.LSTM"),
            ("allocator", "rnnreg stepwise"), ("regularizers", "mask and multiply"),
            ("regularizers", "apply_dropout"), ("regularizers", "autograd"),
            ("regularizers", "closed forms")} <= whats
    assert all(r["faults_per_iter"] >= 0 for r in rows if r["part"] == "allocator")
    routes = torch.ops.rnnreg_fast.gemm_routes()
    if "brgemm" in routes:
        assert ("products", "brgemm") in whats
    if "brgemm_bf16" in routes:
        assert {("products", "brgemm bf16"), ("products", "vnni pack")} <= whats
