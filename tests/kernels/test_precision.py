"""bf16 and fp16 on the CPU: every path runs under autocast and on low-precision models, close to
float32, where it crashed before (the C++ ops under autocast: "expected scalar type Float but found
BFloat16"; oneDNN's LSTM under fp16 autocast, as torch.nn.LSTM itself does)."""

from __future__ import annotations

import logging

import pytest
import torch

import rnnreg
from rnnreg.kernels.precision import outside_cpu_autocast

CONFIGS = [(rnnreg.LSTM, {}), (rnnreg.GRU, {}), (rnnreg.RNN, {}),
           (rnnreg.LSTM, {"zoneout_h_p": 0.1, "zoneout_c_p": 0.2}), (rnnreg.LSTM, {"peepholes": True}),
           (rnnreg.LSTM, {"recurrent_dropout": 0.2}), (rnnreg.GRU, {"zoneout_h_p": 0.2}),
           (rnnreg.RNN, {"nonlinearity": "trec", "trec_threshold": 0.1})]
IDS = [f"{c.__name__}-{'-'.join(k) or 'fused'}" for c, k in CONFIGS]
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 3e-3}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=IDS)
def test_autocast_runs_every_path_close_to_float32(cls, kw, dtype):
    torch.manual_seed(0)
    layer = cls(3, 8, num_layers=2, **kw).eval()
    x = torch.randn(6, 2, 3)
    want = layer(x)[0]
    with torch.autocast("cpu", dtype=dtype):
        out, _ = layer(x)
    # The dtype torch.nn's own layer hands on under the same autocast (GRU: float32 on the CPU).
    base = getattr(torch.nn, cls.__name__)(3, 8)
    with torch.autocast("cpu", dtype=dtype):
        torch_dtype = base(x)[0].dtype if not (dtype == torch.float16 and cls is rnnreg.LSTM) else dtype
    assert out.dtype == torch_dtype
    torch.testing.assert_close(out.float(), want, atol=TOLERANCE[dtype], rtol=0)
    layer.train()
    with torch.autocast("cpu", dtype=dtype):
        out, _ = layer(x)
    out.float().pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in layer.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=IDS)
def test_a_low_precision_model_runs_every_path(cls, kw, dtype):
    torch.manual_seed(0)
    layer = cls(3, 8, **kw).eval()
    x = torch.randn(6, 2, 3)
    want = layer(x)[0]
    layer = layer.to(dtype)
    out, _ = layer(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), want, atol=TOLERANCE[dtype] * 2, rtol=0)


def test_the_upcast_is_logged_once_and_off_autocast_nothing_changes(caplog):
    calls = []

    @outside_cpu_autocast()
    def kernel(a, b):
        calls.append((a.dtype, torch.is_autocast_enabled("cpu")))
        return a @ b, None

    a = torch.randn(2, 2)
    out, none = kernel(a, a)
    assert out.dtype == torch.float32 and none is None and calls[-1] == (torch.float32, False)
    with caplog.at_level(logging.INFO, logger="rnnreg.kernels.precision"), torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = kernel(a.bfloat16(), a)
        kernel(a, a)
    assert out.dtype == torch.bfloat16 and calls[-1] == (torch.float32, False)   # computed in float32
    assert sum("computing in float32" in r.message for r in caplog.records) == 1


def test_under_autocast_the_stepwise_layers_still_run_the_c_kernel(monkeypatch):
    """A layer below hands bf16 on; the C++ kernel must still be the one picked (not the slow
    reference), computing in float32 inside."""
    from rnnreg.kernels import fast

    if not fast.fast_available():
        pytest.skip("the C++ extension could not be built here")
    calls = []
    real = fast.lstm_fast
    monkeypatch.setattr(fast, "lstm_fast", lambda *a, **k: calls.append(a[0].dtype) or real(*a, **k))
    layer = rnnreg.LSTM(3, 8, num_layers=2, zoneout_h_p=0.1).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(torch.randn(6, 2, 3))
    assert len(calls) == 2 and calls[1] == torch.bfloat16 and out.dtype == torch.bfloat16


def test_a_float64_layer_is_left_to_float64_under_autocast():
    layer = rnnreg.LSTM(3, 8, zoneout_h_p=0.1).double().eval()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    want = layer(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, want)
