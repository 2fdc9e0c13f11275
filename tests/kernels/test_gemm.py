"""The per-step products' routes (csrc/gemm.h, csrc/onednn.h), each against torch.mm.

The recurrences take the Fortran BLAS, MKL's packed GEMM or (large products on AMD CPUs)
oneDNN wherever torch brings them, as it does here; the at::mm fallback for a torch without them
is reached through the ``gemm_route`` hook (csrc/probes.cpp), so it is checked here too, on
operands with leading dimensions wider than their rows (the recurrences hand the products slices
of larger buffers).
"""

from pathlib import Path

import pytest
import torch

import rnnreg
from rnnreg.kernels import fast

pytestmark = pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")


def _route(a, b, c, accumulate, route):
    return torch.ops.rnnreg_fast.gemm_route(a, b, c, accumulate, route)


@pytest.mark.parametrize("route", ["aten", "blas", "packed", "onednn", "onednn_t"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "add"])
def test_each_route_computes_the_product(route, dtype, accumulate):
    if route != "aten" and route != "blas" and dtype == torch.float64:
        pytest.skip("MKL's packed GEMM and the oneDNN route are float only; double takes dgemm_ or at::mm")
    if route not in torch.ops.rnnreg_fast.gemm_routes():
        pytest.skip(f"this torch has no {route} route")
    g = torch.Generator().manual_seed(0)
    m, k, n = 7, 13, 11
    a = torch.randn(m, k + 5, dtype=dtype, generator=g)[:, 2:2 + k]  # (m, k), row stride k + 5
    b = torch.randn(k, n + 4, dtype=dtype, generator=g)[:, :n]       # (k, n), row stride n + 4
    c = torch.randn(m, n, dtype=dtype, generator=g)
    expected = a @ b + (c if accumulate else 0)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(_route(a, b, c, accumulate, route), expected, **tol)


def test_an_unknown_route_is_refused():
    x = torch.ones(2, 2)
    with pytest.raises(RuntimeError, match="unknown route"):
        _route(x, x, x, False, "cublas")


def test_the_step_route_is_onednn_only_for_large_products_on_amd():
    # prefer_onednn (csrc/onednn.h): measured faster on an AMD EPYC from 2^23 multiply-adds a
    # product; below that AMD CPUs take sgemm_ and others MKL's packed GEMM (prefer_packed).
    cpuinfo = Path("/proc/cpuinfo")
    amd = cpuinfo.exists() and "AuthenticAMD" in cpuinfo.read_text()
    routes = torch.ops.rnnreg_fast.gemm_routes()
    for backward in (False, True):
        small = torch.ops.rnnreg_fast.step_route(20, 200, 4, backward)   # 20 x 800 x 200
        large = torch.ops.rnnreg_fast.step_route(20, 650, 4, backward)   # 20 x 2600 x 650
        assert small == ("blas" if amd or "packed" not in routes else "packed")  # prefer_packed
        assert (large == "onednn") == (amd and "onednn" in routes)


def test_a_layer_whose_steps_take_onednn_matches_the_reference():
    # B = 32, H = 256: 2^23 multiply-adds per step product, so on an AMD CPU the recurrences take
    # the oneDNN route (elsewhere MKL's); outputs and gradients as the plain-autograd reference's.
    torch.manual_seed(0)
    x = torch.randn(4, 32, 256, requires_grad=True)
    fast_layer = rnnreg.LSTM(256, 256, zoneout_h_p=0.1, implementation="stepwise").eval()
    ref_layer = rnnreg.LSTM(256, 256, zoneout_h_p=0.1, implementation="reference").eval()
    ref_layer.load_state_dict(fast_layer.state_dict())
    outs = []
    for layer in (fast_layer, ref_layer):
        out, (h, c) = layer(x)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, 256)).sum() + c.sum(), [x, *layer.parameters()])
        outs.append((out, h, c, *grads))
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_layer_whose_gradient_products_are_turned_matches_the_reference():
    # T * B = 16384, H = 256, I = 512: dx, dW_ih and dW_hh are products of at least 2^32
    # multiply-adds with twice as many rows as columns, which on an AMD CPU are computed turned,
    # (b^T a^T)^T (prefer_transposed, csrc/gemm.h); elsewhere as they are. Either way the reference's.
    torch.manual_seed(0)
    x = torch.randn(64, 256, 512, requires_grad=True)
    fast_layer = rnnreg.LSTM(512, 256, implementation="stepwise")
    ref_layer = rnnreg.LSTM(512, 256, implementation="reference")
    ref_layer.load_state_dict(fast_layer.state_dict())
    weight = torch.randn(64, 256, 256)
    grads = [torch.autograd.grad((layer(x)[0] * weight).sum(), [x, *layer.parameters()])
             for layer in (fast_layer, ref_layer)]
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
