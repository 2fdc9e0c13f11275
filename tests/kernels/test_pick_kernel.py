"""Which stepwise recurrence serves which tensor (kernels/__init__.py: pick_kernel)."""

import pytest
import torch

import rnnreg
from rnnreg.kernels import fast, pick_kernel, reference, steploop


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_each_device_and_dtype_gets_its_recurrence(cell):
    cpu32 = pick_kernel(cell, torch.empty(0))
    ref = getattr(reference, f"{cell}_reference")
    # The reference as the layers run it: wrapped for CPU autocast (kernels/precision.py).
    if fast.fast_available():
        assert cpu32 is getattr(fast, f"{cell}_fast")
    else:
        assert cpu32.__wrapped__ is ref
    # Half precision on the CPU, and any other device (meta stands in for CUDA here): the step loop.
    assert pick_kernel(cell, torch.empty(0, dtype=torch.bfloat16)) is getattr(steploop, f"{cell}_steploop")
    assert pick_kernel(cell, torch.empty(0, device="meta")) is getattr(steploop, f"{cell}_steploop")
    assert pick_kernel(cell, torch.empty(0), reference_only=True).__wrapped__ is ref


def test_a_bf16_layer_runs_the_step_loop_close_to_float32():
    torch.manual_seed(0)
    layer = rnnreg.LSTM(4, 6, zoneout_h_p=0.3, zoneout_c_p=0.3, peepholes=True).eval()
    x = torch.randn(5, 3, 4)
    want, _ = layer(x)
    got, _ = layer.to(torch.bfloat16)(x.bfloat16())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=3e-2)
