"""Smoke test of benchmarks/gpu_session.sh, the one-command GPU session: on a machine without CUDA
it runs every phase to its end, the gpu-marked tests all skipped and the benchmark's runs exiting
2, and leaves its files where $OUT says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # a shell script running pytest and the benchmark in subprocesses

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_session.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present here")
def test_the_session_runs_every_phase_and_writes_its_files(tmp_path):
    # The script calls python3: this interpreter's, first on the PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, OUT=str(tmp_path), PATH=path, TEST_SECONDS="240", BENCH_SECONDS="60",
               COMPILE_SECONDS="60")
    env.pop("RNNREG_GPU_TESTS_DEVICE", None)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    files = {p.name for p in tmp_path.iterdir()}
    assert {"device.txt", "gpu-tests.log", "gpu.jsonl", "gpu-compile.jsonl", "gpu-bench.log"} <= files
    assert len(files) <= 8  # what the device tool brings back from $OUT
    tests = (tmp_path / "gpu-tests.log").read_text()
    assert "tests exit 0" in tests and " skipped" in tests and "failed" not in tests
    bench = (tmp_path / "gpu-bench.log").read_text()
    for run in ("bench fp32", "bench bf16", "compile"):
        assert f"{run} exit 2" in bench, bench
    assert "no CUDA device" in bench and (tmp_path / "gpu.jsonl").read_text() == ""


def test_an_unknown_phase_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), "test"], env=dict(os.environ, OUT=str(tmp_path)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage: gpu_session.sh" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())
