"""Every pointwise clone of the C++ kernel (csrc/dispatch.h), not only the widest this CPU runs.

The kernel picks its AVX-512, AVX2 or baseline clone at run time, so a test run on one machine
exercises one of them. ATEN_CPU_CAPABILITY caps the choice as it caps torch's own kernels; here the
twin tests of the recurrences, the masks and the noise run again in subprocesses under each cap.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnreg.kernels import fast

pytestmark = [pytest.mark.slow,  # two pytest subprocesses, ~15 s each
              pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")]

REPO = Path(__file__).resolve().parents[2]
TWIN_TESTS = ["tests/kernels/test_fast.py", "tests/regularizers/test_masks.py",
              "tests/regularizers/test_normal_noise.py"]
PROBE = "import torch, rnnreg.kernels.fast as f; assert f.fast_available(); print(torch.ops.rnnreg_fast.simd_clone())"


@pytest.mark.parametrize("cap, clone", [("avx2", "avx2"), ("default", "base")])
def test_the_twin_tests_pass_on_each_clone(cap, clone):
    env = {**os.environ, "ATEN_CPU_CAPABILITY": cap}
    probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                           timeout=600)
    assert probe.returncode == 0, probe.stderr[-2000:]
    if probe.stdout.strip() == "base" and clone == "avx2":
        pytest.skip("this CPU has no AVX2")
    assert probe.stdout.strip() == clone
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TWIN_TESTS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
