"""The per-step products' routes (csrc/gemm.h, csrc/onednn.h, csrc/brgemm.h), each against torch.mm.

The recurrences take the Fortran BLAS, MKL's packed GEMM, oneDNN (on AMD CPUs: large step
products, and with AVX-512 the all-step products of 2^20 multiply-adds or more) or oneDNN's brgemm
micro-kernel (bf16 step products wherever oneDNN generates it, float ones on AMD CPUs with
AVX-512) wherever torch brings them, as it does here; the at::mm fallback for a torch without
them is reached through the ``gemm_route`` hook (csrc/probes.cpp), so it is checked here too, on
operands with leading dimensions wider than their rows (the recurrences hand the products slices
of larger buffers).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rnnreg
from rnnreg.kernels import fast

pytestmark = pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")


def _route(a, b, c, accumulate, route):
    return torch.ops.rnnreg_fast.gemm_route(a, b, c, accumulate, route)


@pytest.mark.parametrize("route", ["aten", "blas", "packed", "onednn", "onednn_t", "onednn_mm", "brgemm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "add"])
def test_each_route_computes_the_product(route, dtype, accumulate):
    if route != "aten" and route != "blas" and dtype == torch.float64:
        pytest.skip("MKL's packed GEMM and the oneDNN routes are float only; double takes dgemm_ or at::mm")
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


@pytest.mark.parametrize("a_t", [False, True], ids=["a", "a_view_t"])
@pytest.mark.parametrize("b_t", [False, True], ids=["b", "b_view_t"])
def test_the_all_step_onednn_product_takes_transposed_views(a_t, b_t):
    # mm_onednn (csrc/recurrence.h) reads a as rows (a transposed view is turned first) and hands
    # b^T to oneDNN as a view: the weight gradients' dG^T x and dx = dG W_ih are such products.
    if "onednn_mm" not in torch.ops.rnnreg_fast.gemm_routes():
        pytest.skip("this torch has no oneDNN ops")
    g = torch.Generator().manual_seed(1)
    m, k, n = 37, 70, 45
    a = torch.randn(k, m, generator=g).t() if a_t else torch.randn(m, k, generator=g)
    b = torch.randn(n, k, generator=g).t() if b_t else torch.randn(k, n, generator=g)
    got = _route(a, b, torch.zeros(m, n), False, "onednn_mm")
    torch.testing.assert_close(got, a @ b, rtol=1e-5, atol=1e-5)


def test_an_unknown_route_is_refused():
    x = torch.ones(2, 2)
    with pytest.raises(RuntimeError, match="unknown route"):
        _route(x, x, x, False, "cublas")


def _cpu():
    """(AMD?, AVX-512?) as /proc/cpuinfo says; (False, False) where there is none."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    return "AuthenticAMD" in text, " avx512f " in text.replace("\n", " ")


@pytest.mark.parametrize("m,k,n", [(7, 1500, 150), (20, 1026, 64), (3, 0, 70), (1, 2, 1)])
@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "add"])
def test_the_brgemm_route_at_its_block_edges(m, k, n, accumulate):
    # brgemm_nn (csrc/brgemm.h) splits the columns into blocks of 64 (a ragged last one) and, from
    # k > 1024, k into chunks of 512 accumulated in place, the remainder last (1026: 512, 512, 2;
    # 1500: 512, 512, 476); k = 0 must still set (or keep) c.
    if "brgemm" not in torch.ops.rnnreg_fast.gemm_routes():
        pytest.skip("this torch has no float brgemm")
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    c = torch.randn(m, n, generator=g)
    expected = a.double() @ b.double() + (c.double() if accumulate else 0)
    got = _route(a, b, c, accumulate, "brgemm")
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=2e-4)


@pytest.mark.parametrize("m,k,n", [(20, 200, 800), (7, 1500, 150), (5, 2, 3), (3, 1030, 70)])
@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "add"])
def test_the_bf16_brgemm_reads_its_vnni_weight_right(m, k, n, accumulate):
    # With bf16 products the step's weight goes to the micro-kernel in VNNI layout (vnni_bf16: row
    # pairs interleaved; the forward builds it from W_hh, b^T's rows, by a transpose of bf16 pairs).
    # The product of the bf16-rounded operands accumulates in float32, so it must match float64 on
    # the same rounded values to float32's accuracy: a misplaced pair would be off by O(1). k = 1030
    # runs as chunks of 512, 512 and 6 (each even, so no pair is split).
    if "brgemm_bf16" not in torch.ops.rnnreg_fast.gemm_routes():
        pytest.skip("no bf16 brgemm here (this torch, or oneDNN on this CPU)")
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    c = torch.randn(m, n, generator=g)
    packed = torch.ops.rnnreg_fast.vnni(b)
    assert packed.shape == (k // 2, n, 2)
    assert torch.equal(packed[:, :, 1].float(), b[1::2].bfloat16().float())
    assert torch.equal(torch.ops.rnnreg_fast.vnni(b.t().contiguous(), True), packed)
    out = c.clone()
    torch.ops.rnnreg_fast.brgemm(a.bfloat16(), packed, out, accumulate)
    rounded = a.bfloat16().double() @ b.bfloat16().double() + (c.double() if accumulate else 0)
    torch.testing.assert_close(out.double(), rounded, rtol=1e-5, atol=2e-4)
    with pytest.raises(RuntimeError, match="k even"):
        torch.ops.rnnreg_fast.vnni(b[:1])
    with pytest.raises(RuntimeError, match="k even"):
        torch.ops.rnnreg_fast.vnni(b[:1].t().contiguous(), True)


@pytest.mark.parametrize("k,n", [(2, 1), (4, 0), (0, 5), (0, 0), (2, 3)])
def test_the_vnni_layout_at_degenerate_shapes(k, n):
    # Both orientations of vnni_bf16 agree with the layout built in torch, empty and size-1
    # dimensions included (the forward's view of bf16 pairs as float needs dense rows).
    b = torch.randn(k, n)
    expected = b.bfloat16().reshape(k // 2, 2, n).transpose(1, 2)
    assert torch.equal(torch.ops.rnnreg_fast.vnni(b), expected)
    assert torch.equal(torch.ops.rnnreg_fast.vnni(b.t().contiguous(), True), expected)
    assert torch.equal(torch.ops.rnnreg_fast.vnni(b.t(), True), expected)  # a strided view


_CAPPED = """
import torch, rnnreg
from rnnreg.kernels.build import native_ops
ops = native_ops()
assert "brgemm_bf16" not in ops.gemm_routes(), ops.gemm_routes()
assert ops.step_route(20, 200, 4, False, True) == "bf16", ops.step_route(20, 200, 4, False, True)
for cls in (rnnreg.LSTM, rnnreg.GRU, rnnreg.RNN):
    layer = cls(8, 16, zoneout_h_p=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(torch.randn(5, 3, 8))
    out.float().sum().backward()
    assert torch.isfinite(layer.weight_hh_l0.grad).all()
"""


def test_bf16_products_fall_back_where_onednn_generates_no_bf16_kernel():
    # torch offers the bf16 micro-kernel wherever oneDNN finds AVX-512, but oneDNN generates it
    # only with AVX512_BF16 or AMX: under ONEDNN_MAX_CPU_ISA=AVX512_CORE (as on an AVX-512 CPU
    # without bf16, or an AVX2 one) the bf16 route raised inside the step loop. brgemm_bf16_runs
    # (csrc/brgemm.h) tries it once; the products then take torch.mm on bf16 instead. (Before the
    # probe the route was for AMD CPUs with AVX-512 only, so this failed there; it now guards every
    # AVX-512 CPU.)
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX512_CORE")
    done = subprocess.run([sys.executable, "-c", _CAPPED], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_step_route_follows_the_cpu():
    # RecGemm (csrc/rec_gemm.h): bf16 step products take oneDNN's brgemm micro-kernel wherever it
    # runs here, when k is even, up to a 2^21-element weight but at every size on AMD CPUs with
    # AVX-512 (prefer_brgemm); float ones there up to a 2^21-element weight (oneDNN's inner product
    # above); on other AMD CPUs, oneDNN from 2^23 multiply-adds, sgemm_ below (prefer_onednn);
    # elsewhere MKL's packed GEMM (prefer_packed).
    amd, avx512 = _cpu()
    routes = torch.ops.rnnreg_fast.gemm_routes()
    onednn, brgemm = "onednn" in routes, amd and avx512 and "brgemm" in routes
    bf16_route = "bf16_brgemm" if "brgemm_bf16" in routes else "bf16"
    mkl = "blas" if amd or "packed" not in routes else "packed"
    for backward in (False, True):
        route = lambda batch, hidden, bf16=False: torch.ops.rnnreg_fast.step_route(  # noqa: E731
            batch, hidden, 4, backward, bf16)
        assert route(20, 64) == ("brgemm" if brgemm else mkl)  # 327K
        small = "onednn" if amd and avx512 and onednn else mkl
        assert route(20, 200) == ("brgemm" if brgemm else small)
        medium = "onednn" if amd and onednn else mkl  # 34M multiply-adds
        assert route(20, 650) == ("brgemm" if brgemm else medium)
        assert route(80, 1150) == ("onednn" if amd and onednn else mkl)  # 5.3M weight
        assert route(80, 1150, True) == (bf16_route if amd and avx512 else "bf16")
        assert route(20, 200, True) == bf16_route
        assert route(20, 650, True) == bf16_route  # a 1.7M-element weight, under 2^21
        # an odd hidden size: the forward's k = H is odd, the backward's k = 4H even
        assert route(20, 201, True) == (bf16_route if backward else "bf16")


def test_the_all_step_products_take_onednn_on_amd_cpus_with_avx512():
    # prefer_onednn_mm (csrc/onednn.h): MKL runs its AVX2 code there, oneDNN its AVX-512 kernels;
    # products under 2^20 multiply-adds stay on MKL (oneDNN's fixed cost a call).
    amd, avx512 = _cpu()
    onednn = "onednn" in torch.ops.rnnreg_fast.gemm_routes()
    assert torch.ops.rnnreg_fast.onednn_mm(700, 800, 200) == (amd and avx512 and onednn)
    assert not torch.ops.rnnreg_fast.onednn_mm(20, 64, 64)


def test_onednn_off_turns_the_onednn_routes_off():
    with torch.backends.mkldnn.flags(enabled=False):
        assert not torch.ops.rnnreg_fast.onednn_mm(700, 800, 200)
        for bf16 in (False, True):
            assert "onednn" not in torch.ops.rnnreg_fast.step_route(20, 650, 4, False, bf16)
            assert "brgemm" not in torch.ops.rnnreg_fast.step_route(20, 650, 4, False, bf16)


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (8, 8), (33, 70), (64, 65), (300, 513)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("vector", [True, False], ids=["vector", "scalar"])
def test_the_transpose_is_exact(shape, dtype, vector):
    # transposed() (csrc/transpose.h): 8 x 8 register blocks (AVX2, float) with scalar edges, in
    # 32 x 32 tiles and 256 x 256 blocks; the scalar twin forced with vector=False. A transpose
    # moves values, so both must equal w.t() bit for bit, at every ragged edge.
    if vector and dtype == torch.float32 and not torch.ops.rnnreg_fast.transpose_vector():
        pytest.skip("no AVX2 here (or ATEN_CPU_CAPABILITY caps it): the vector kernel cannot run")
    w = torch.randn(*shape, dtype=dtype)
    got = torch.ops.rnnreg_fast.transpose(w, vector)
    assert got.is_contiguous() and torch.equal(got, w.t())


def test_the_transpose_takes_a_strided_view():
    w = torch.randn(40, 90)[:, 5:75]  # (40, 70), row stride 90
    assert torch.equal(torch.ops.rnnreg_fast.transpose(w, True), w.t())


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
    # multiply-adds with twice as many rows as columns, which on an AMD CPU without AVX-512 are
    # computed turned, (b^T a^T)^T (prefer_transposed, csrc/gemm.h), on one with AVX-512 by oneDNN
    # from dG^T turned into rows (grad_t, csrc/recurrence.h); elsewhere as they are. Either way the
    # reference's.
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
