"""The step loop's Triton kernels build for NVIDIA GPUs, here, without one.

test_steploop.py runs the kernels under Triton's CPU interpreter, which checks their arithmetic but
not that Triton's GPU compiler accepts them: the interpreter runs the Python body on NumPy arrays
and skips the type checks, layouts and register allocation of a real build. Triton's wheel brings
that compiler and NVIDIA's assembler (ptxas), and neither needs a GPU; only the launch does. So
here a stand-in driver names the target, and the kernel variants the step loop launches for each
cell with no option and with all of them (so every branch of every kernel; a combination of some
options compiles no code that these two do not), in training and evaluation, in float32, bf16,
fp16 and float64, go through ``JITFunction.warmup``: Triton's own specialization of the
arguments (16-byte aligned pointers get the divisibility hint a CUDA tensor gets), then the whole
pipeline down to a cubin, for the Hopper chips the GPU benchmark targets (H100 / H200, sm_90) and
the A100 (sm_80). Nothing runs the kernels here: their arguments are the step loop's, its values
meaningless.

A kernel's register use is checked too: ptxas reports its spills, and the step loop's passes are
elementwise, so a spill at the largest block size (``pointwise_triton.MAX_BLOCK``) would mean a
kernel written against the grain, or too many (b, j) pairs per thread (``pointwise_triton._grid``).
Register allocation differs between combinations of options, so ``RNNREG_TRITON_BUILD_ALL=1``
builds every combination instead of the two. Each target's line (variants built, spills, seconds)
is printed; on the 2-core Xeon of 2026-12-03 every combination was 656 variants per target, none
spilling, in about two minutes each:

    RNNREG_TRITON_BUILD_ALL=1 pytest -s tests/kernels/test_triton_gpu_build.py
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import subprocess
import time

import pytest
import torch

from rnnreg.kernels.steploop import pointwise_backend
from steploop_fixtures import (KINDS, OPTIONS, TRITON_MODULES, forget_triton_modules, make_case,
                               run)

triton = pytest.importorskip("triton", reason="Triton is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

KERNELS = ("lstm_fwd_kernel", "lstm_bwd_kernel", "gru_fwd_kernel", "gru_bwd_kernel",
           "rnn_fwd_kernel", "rnn_bwd_kernel")
ARCHS = {"sm_90": 90, "sm_80": 80}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64}


class StandInDriver:
    """What JITFunction.run asks of Triton's active driver before a launch: the device, its
    stream and the compile target. Launching would need the real one."""

    def __init__(self, arch: int) -> None:
        from triton.backends.compiler import GPUTarget
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device=None) -> int:
        return 0

    def get_current_target(self):
        return self.target


class Builds:
    """Stands in for one kernel in pointwise_triton's namespace: ``kernel[grid](*args)`` builds
    the variant those arguments select, at the largest block size and its warp count, instead of
    launching it."""

    def __init__(self, kernel, pointwise, built: dict) -> None:
        self.kernel, self.built = kernel, built
        _, self.block, self.warps = pointwise._grid(pointwise.MAX_BLOCK)

    def __getitem__(self, grid):
        def build(*args, **kwargs):
            kwargs.update(BLOCK=self.block, num_warps=self.warps)
            compiled = self.kernel.warmup(*args, grid=grid, **kwargs)
            self.built[compiled.hash] = compiled
        return build


def option_sets(options: tuple[str, ...]) -> list[tuple[str, ...]]:
    """No option and every option (each kernel's branches all compile in the second), or, with
    RNNREG_TRITON_BUILD_ALL=1, every combination."""
    if os.environ.get("RNNREG_TRITON_BUILD_ALL") == "1":
        return [on for n in range(len(options) + 1) for on in itertools.combinations(options, n)]
    return [(), options]


def build_all(arch: int, monkeypatch, cache_dir) -> dict:
    """The variants the step loop launches for each cell's ``option_sets``, built for ``arch``:
    {hash: CompiledKernel}."""
    from triton.runtime.driver import driver
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(cache_dir))  # a real build, not an earlier one's
    saved = getattr(driver, "_active", None)
    driver.set_active(StandInDriver(arch))
    forget_triton_modules()
    built: dict = {}
    try:
        pointwise = importlib.import_module(TRITON_MODULES[0])
        assert isinstance(pointwise.lstm_fwd_kernel, triton.runtime.JITFunction)  # not interpreted
        for name in KERNELS:
            monkeypatch.setattr(pointwise, name, Builds(getattr(pointwise, name), pointwise, built))
        with pointwise_backend("triton"):
            for kind, dtype in itertools.product(KINDS, DTYPES.values()):
                # B = 8: every step's slice of every operand starts 16-byte aligned, as at real sizes.
                for on in option_sets(OPTIONS[kind.split("_")[0]]):
                    fn, _, args, kw, diff = make_case(kind, dtype, on, T=2, B=8)
                    run(fn, args, kw, diff)  # training: the forward keeps what the backward reads
                    with torch.no_grad():
                        fn(*args.values(), **kw)  # evaluation
    finally:
        driver.set_active(saved)
        forget_triton_modules()
    return built


def spills(compiled) -> tuple[int, int]:
    """(spill stores, spill loads) in bytes, from ptxas -v on the kernel's PTX."""
    from triton.backends.nvidia.compiler import get_ptxas
    ptx = compiled.asm["ptx"]
    name = re.search(r"^\.target (sm_\w+)", ptx, re.M).group(1)  # sm_90a, sm_80
    result = subprocess.run([get_ptxas(compiled.metadata.target.arch).path, "-v", f"--gpu-name={name}",
                             "-o", "/dev/null", "-"],
                            input=ptx, capture_output=True, text=True, check=True)
    found = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", result.stderr)
    return tuple(map(max, zip(*[tuple(map(int, f)) for f in found])))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_launched_variant_builds_for_the_gpu(arch, monkeypatch, tmp_path):
    start = time.perf_counter()
    built = build_all(ARCHS[arch], monkeypatch, tmp_path)
    spilled = [k for k in built.values() if spills(k) != (0, 0)]
    print(f"\n{arch}: {len(built)} variants built, {len(spilled)} spilling, "
          f"{time.perf_counter() - start:.0f} s")
    by_kernel = {name: [k for k in built.values() if k.name == name] for name in KERNELS}
    for name, variants in by_kernel.items():
        assert variants, f"{name} was never launched"
        # every storage dtype reached every kernel (the first pointer: pre / gates / xg / deriv)
        first = {str(k.src.signature[next(iter(k.src.signature))]) for k in variants}
        assert first == {"*fp32", "*bf16", "*fp16", "*fp64"}, (name, first)
    for k in built.values():
        assert k.metadata.target.arch == ARCHS[arch] and k.asm["cubin"], k.name
    assert not spilled, [(k.name, spills(k), k.src.signature, k.src.constants) for k in spilled]
