"""benchmarks/gpu_probe.py, the GPU session's description of its machine: its Triton kernel must be
defined in a file (a heredoc fed to ``python3 -`` cannot define one: that probe failed), and each
part reports its own failure without stopping the others."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # starts the probe in subprocesses

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_probe.py"


def _probe(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **env))


def test_its_triton_launch_runs_under_the_interpreter_on_a_cpu():
    pytest.importorskip("triton")
    done = _probe("--device", "cpu", TRITON_INTERPRET="1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "launch ok" in done.stdout and "failed" not in done.stdout, done.stdout
    assert f"torch {torch.__version__}" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present here")
def test_without_cuda_every_part_reports_and_it_still_exits_0():
    done = _probe()
    assert done.returncode == 0
    assert f"torch {torch.__version__}" in done.stdout  # what could be read was
    for part in ("versions", "lstm_autocast_dtype", "triton_launch"):
        assert f"{part} failed:" in done.stdout, done.stdout
