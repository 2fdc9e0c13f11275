"""Smoke tests of benchmarks/bench_gpu.py: where no CUDA device is present it says so in one line
and exits 2; its code paths run on the CPU (``--device cpu``) and print only JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # runs the benchmark script in a subprocess

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present here")
def test_without_cuda_it_exits_2_with_one_line():
    done = _run("--quick")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "no CUDA device" in done.stderr


def test_quick_cpu_run_prints_json_lines():
    done = _run("--quick", "--device", "cpu", "--no-compile", "--sizes", "small",
                "--configs", "zoneout,gru", "--dtypes", "fp32")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    # cuDNN is the baseline of every line; Triton and CUDA graphs are skipped on the CPU.
    assert {(r["config"], r["contender"]) for r in rows} == {
        (c, k) for c in ("zoneout", "gru") for k in ("layer", "steploop_torch")}
    for r in rows:
        assert r["ratio"] > 0 and r["tokens_per_s"] > 0 and r["baseline_tokens_per_s"] > 0, r
        assert r["baseline"] == {"lstm": "torch.nn.LSTM", "gru": "torch.nn.GRU"}[r["cell"]], r
        assert r["tf32"] is False, r  # full float32 on both sides unless --tf32


def test_tf32_is_set_alike_for_cudnn_and_the_step_loops_matmuls(monkeypatch):
    """torch's defaults allow TF32 in cuDNN's RNNs but not in cuBLAS's matmuls: a float32 ratio
    would compare TF32 cuDNN with full-float32 products. Both switches follow --tf32."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_gpu

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        for on in (True, False):
            bench_gpu.set_tf32(on)
            assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (on, on)
        assert bench_gpu.parse_args([]).tf32 is False and bench_gpu.parse_args(["--tf32"]).tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
