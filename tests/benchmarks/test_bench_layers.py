"""Smoke test of benchmarks/bench_layers.py: a --quick run prints only well-formed JSON lines."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # runs the benchmark script in a subprocess

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_layers.py"


def _torch_lstm_runs_under_bf16_autocast() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(2, 2)(torch.zeros(1, 1, 2))
    except RuntimeError:  # oneDNN has no bf16 LSTM on this CPU (AVX2-only ones)
        return False
    return True
KEYS = {"size", "config", "cell", "baseline", "tokens_per_s", "baseline_tokens_per_s", "ratio",
        "ratio_min", "ratio_max", "peak_fraction", "peak_gflops", "peak_by", "autocast", "repeats", "threads",
        "torch", "malloc", "faults_per_iter", "baseline_faults_per_iter"}
GLIBC = platform.libc_ver()[0] == "glibc"


def test_quick_run_prints_json_lines():
    # --quick runs on one thread: the smoke run then stays in seconds even on a busy machine.
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines, done.stderr[-2000:]
    rows = [json.loads(line) for line in lines]
    for row in rows:
        assert KEYS <= row.keys(), row
        assert row["ratio"] > 0 and row["tokens_per_s"] > 0 and row["baseline_tokens_per_s"] > 0, row
        assert row["peak_fraction"] > 0 and row["peak_gflops"] > 0, row
        assert row["peak_by"] in ("torch.mm", "onednn"), row
        assert row["threads"] == 1 and row["quick"] is True, row
        assert row["malloc"] == ("steady" if GLIBC else "default"), row
        assert row["faults_per_iter"] >= 0 and row["baseline_faults_per_iter"] >= 0, row
        assert row["autocast"] == ("bfloat16" if row["config"].endswith("_bf16") else None), row
        assert row["baseline"] == {"lstm": "torch.nn.LSTM", "gru": "torch.nn.GRU", "rnn": "torch.nn.RNN"}[row["cell"]], row
    # The fused configurations never need the C++ kernel, so they are always there, at every size;
    # the bf16 ones only where torch.nn.LSTM itself runs under CPU bf16 autocast (the baseline).
    bf16 = _torch_lstm_runs_under_bf16_autocast()
    assert ("torch.nn.LSTM fails under torch.bfloat16" in done.stderr) != bf16
    fused_configs = ("fused", "awd_all", "gru_fused", "rnn_fused") + (("fused_bf16",) if bf16 else ())
    fused = {(r["size"], r["config"]) for r in rows if r["config"] in fused_configs}
    assert fused == {(s, c) for s in ("small", "medium", "awd") for c in fused_configs}
    # The plain-PyTorch twin runs exactly for the LSTM configurations whose only regularizers it
    # has: the regularized fused ones, and AWD-LSTM's set on the stepwise kernel where that is built.
    twinned = {r["config"] for r in rows if r["ratio_same_work"] is not None}
    stepwise_built = any(r["config"] == "stepwise" for r in rows)
    expected = {"weight_drop", "locked_dropout", "ar_tar", "awd_all", "weight_noise"}
    assert twinned == expected | ({"awd_all_stepwise"} if stepwise_built else set()), twinned


def test_malloc_default_leaves_the_allocator_alone(monkeypatch, capsys):
    """In-process, so that a call to mallopt would be seen: --malloc default never makes it."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_layers

    monkeypatch.setattr(bench_layers, "steady_malloc", lambda: pytest.fail("mallopt was called"))
    monkeypatch.setattr(bench_layers, "json_stdout", lambda: sys.stdout)
    threads = torch.get_num_threads()
    try:
        argv = ["--quick", "--sizes", "small", "--configs", "fused", "--malloc", "default"]
        assert bench_layers.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["malloc"] == "default" and row["config"] == "fused", row


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_steady_malloc_takes_every_setting():
    """In a subprocess (the setting is for the whole process): glibc accepts all four."""
    code = (f"import sys; sys.path.insert(0, {str(SCRIPT.parent)!r}); import bench_layers; "
            "print(bench_layers.steady_malloc())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "steady", done.stderr[-2000:]


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_steady_malloc_never_trims():
    """A freed block larger than any finite trim threshold we once set (1 GiB, which the AWD size
    crossed: the baseline's next step took 36,000 fresh pages) is reused, not mapped afresh. libc's
    own malloc, with no threads about: the same size comes back (torch's aligned allocations ask a
    little more than they freed, which a stray small block above them turns into heap growth)."""
    code = (f"import sys, ctypes; sys.path.insert(0, {str(SCRIPT.parent)!r}); import bench_layers\n"
            "assert bench_layers.steady_malloc() == 'steady'\n"
            "libc = ctypes.CDLL(None)\n"
            "libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]\n"
            "libc.free.argtypes = [ctypes.c_void_p]\n"
            "libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]\n"
            "n = (5 << 30) // 4\n"  # 1.25 GiB, touched, freed, asked for again and touched
            "block = libc.malloc(n); libc.memset(block, 1, n); libc.free(block)\n"
            "before = bench_layers.minor_faults()\n"
            "block = libc.malloc(n); libc.memset(block, 1, n)\n"
            "print(bench_layers.minor_faults() - before, n // 4096)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    faults, pages = map(int, done.stdout.split())
    assert faults < pages // 100, (faults, pages)
