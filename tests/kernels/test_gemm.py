"""The per-step products' routes (csrc/gemm.h), each against torch.mm.

The recurrences take the Fortran BLAS or MKL's packed GEMM wherever torch brings them, as it does
here; the at::mm fallback for a torch without them is reached through the ``gemm_route`` hook
(csrc/probes.cpp), so it is checked here too, on operands with leading dimensions wider than their
rows (the recurrences hand the products slices of larger buffers).
"""

import pytest
import torch

from rnnreg.kernels import fast

pytestmark = pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")


def _route(a, b, c, accumulate, route):
    return torch.ops.rnnreg_fast.gemm_route(a, b, c, accumulate, route)


@pytest.mark.parametrize("route", ["aten", "blas", "packed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "add"])
def test_each_route_computes_the_product(route, dtype, accumulate):
    if route == "packed" and dtype == torch.float64:
        pytest.skip("MKL's packed GEMM is float only; double takes dgemm_ or at::mm")
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
