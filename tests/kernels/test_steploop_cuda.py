"""The step loop and the layers on a CUDA GPU (marked gpu: skipped where there is none).

What the CPU suite checks under Triton's interpreter (tests/kernels/test_steploop.py), run on the
device with compiled Triton kernels: each cell against the plain-autograd reference, outputs and
every gradient; half precision and autocast; the opt-in CUDA graphs of the forward loop against
the eager loop, on new arguments at each call; and the layers as users build them (every stepwise
regularizer, GRU-D, Clockwork) against the CPU, under bf16 autocast and under torch.compile.

``benchmarks/gpu_session.sh`` runs this file (with the other gpu-marked tests) and
``benchmarks/bench_gpu.py`` in one device session. The same tests, bar the CUDA graphs, also run on
the CPU with the interpreter, which is how they were written without a GPU:
``RNNREG_GPU_TESTS_DEVICE=cpu TRITON_INTERPRET=1 pytest tests/kernels/test_steploop_cuda.py``.
"""

from __future__ import annotations

import os

import pytest
import torch

import rnnreg
from rnnreg.kernels import steploop_graphs
from rnnreg.kernels.steploop import pointwise_backend, pointwise_for
from rnnreg.layers.clockwork import ClockworkRNN
from rnnreg.layers.grud import GRUD

from steploop_fixtures import (KINDS, OPTIONS, TOL, assert_close, assert_low_precision,
                               assert_matches, make_case, run)

DEVICE = os.environ.get("RNNREG_GPU_TESTS_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else []
F32, F64 = torch.float32, torch.float64


@pytest.fixture(autouse=True)
def full_float32_products():
    """float32 products in float32, not TF32 (which an image can switch on for cuBLAS and cuDNN):
    the float32 comparisons below are to 1e-4."""
    precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = cudnn_tf32


def on_device(case):
    """make_case's (step loop, reference, args, kw, differentiable names) with its tensors on DEVICE."""
    fn, ref, args, kw, diff = case
    move = lambda v: v.to(DEVICE) if torch.is_tensor(v) else v  # noqa: E731
    return fn, ref, {k: move(v) for k, v in args.items()}, {k: move(v) for k, v in kw.items()}, diff


def all_options(kind):
    return OPTIONS[kind.split("_")[0]]


GRID = [(k, on, dt) for k in KINDS for on, dt in [((), F64), (all_options(k), F64), (all_options(k), F32)]]


@pytest.mark.parametrize("kind,on,dtype", GRID,
                         ids=[f"{k}-{'all' if on else 'none'}-{str(d)[6:]}" for k, on, d in GRID])
def test_the_triton_step_loop_matches_the_reference(kind, on, dtype):
    pytest.importorskip("triton")
    case = on_device(make_case(kind, dtype, on))
    # Nothing forced: on a CUDA tensor (or an interpreted CPU one) the loop picks Triton itself.
    assert pointwise_for(case[2]["x"]).__name__.endswith("pointwise_triton")
    # float32: cuBLAS sums the weight gradients in another order than the reference's steps.
    assert_matches(case, dtype, tol=TOL[dtype] * (10 if dtype == F32 else 1))


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("kind", ["lstm_peep", "gru", "rnn_tanh"])
def test_half_precision_on_the_device(kind, dtype, backend):
    """Half storage, float32 pointwise math: close to the float64 reference on the same values."""
    if backend == "triton":
        pytest.importorskip("triton")
    fn, ref, args, kw, diff = on_device(make_case(kind, dtype, all_options(kind)))
    with pointwise_backend(backend):
        result = run(fn, args, kw, diff)
    up = {k: v.double() if torch.is_tensor(v) else v for k, v in kw.items()}
    reference = run(ref, {k: None if v is None else v.double() for k, v in args.items()}, up, diff)
    assert_low_precision(result, reference, dtype, dtype, DEVICE)


@pytest.mark.parametrize("kind", ["lstm_peep", "gru", "rnn_trec"])
def test_autocast_on_the_device_computes_in_its_dtype(kind):
    fn, ref, args, kw, diff = on_device(make_case(kind, F32, all_options(kind)))
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        result = run(fn, args, kw, diff)
    # gradients in float32: through the differentiable casts to bfloat16
    assert_low_precision(result, run(ref, args, kw, diff), torch.bfloat16, F32, DEVICE)


@pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", ["lstm_peep", "gru", "rnn_tanh"])
def test_cuda_graphs_replay_the_eager_loop_on_new_arguments(kind, train):
    """Captured on the first call, replayed on the next ones, each with new values copied into the
    graph's buffers: every call gives the eager loop's outputs (and gradients) for its arguments."""
    pytest.importorskip("triton")
    cases = [on_device(make_case(kind, F32, all_options(kind), seed=s)) for s in (0, 1, 2)]

    def call(case):
        fn, _, args, kw, diff = case
        if train:
            return run(fn, args, kw, diff)
        with torch.no_grad():
            out = fn(*args.values(), **kw)
        return list(out) if isinstance(out, tuple) else [out], {}

    eager = [call(c) for c in cases]
    steploop_graphs.use_cuda_graphs(True)
    try:
        graphed = [call(c) for c in cases]
        assert steploop_graphs.cached_graphs() == 1
    finally:
        steploop_graphs.use_cuda_graphs(False)
        steploop_graphs.clear_cuda_graphs()
    for (out, grads), (out_g, grads_g) in zip(eager, graphed):
        for a, b in zip(out_g, out):
            assert_close(a, b, 1e-5, "output")
        for k in grads:
            assert_close(grads_g[k], grads[k], 1e-5, f"grad {k}")


# The layers as a user builds them: every stepwise regularizer, and the fused path.
LAYERS = [(rnnreg.LSTM, {"zoneout_h_p": 0.1, "zoneout_c_p": 0.3}), (rnnreg.LSTM, {"recurrent_dropout": 0.3}),
          (rnnreg.LSTM, {"recurrent_dropout": 0.3, "recurrent_dropout_mode": "semeniuta"}),
          (rnnreg.LSTM, {"peepholes": True}), (rnnreg.LSTM, {"weight_p": 0.3}),
          (rnnreg.GRU, {"zoneout_h_p": 0.2, "recurrent_dropout": 0.2}),
          (rnnreg.RNN, {"nonlinearity": "trec", "trec_threshold": 0.1, "zoneout_h_p": 0.1})]
LAYER_IDS = [f"{c.__name__}-{'-'.join(k)}" for c, k in LAYERS]


def _forward_backward(layer, x):
    x = x.clone().requires_grad_()
    out, _ = layer(x)
    out.float().pow(2).sum().backward()
    return [t.float().cpu() for t in [out.detach(), x.grad] + [p.grad for p in layer.parameters()]]


@pytest.mark.parametrize("cls,kw", LAYERS, ids=LAYER_IDS)
def test_a_layer_on_the_device_matches_the_cpu_in_eval(cls, kw):
    """Eval draws no masks (zoneout: its expectation), so the device and the plain-autograd
    reference on the CPU see the same recurrence: outputs and every gradient agree. (The
    reference, not the C++ kernel: a GPU machine then builds nothing for these tests.)"""
    torch.manual_seed(0)
    cpu = cls(5, 8, num_layers=2, bidirectional=True, **kw, implementation="reference").double().eval()
    device = cls(5, 8, num_layers=2, bidirectional=True, **kw).double().eval().to(DEVICE)
    device.load_state_dict(cpu.state_dict())
    x = torch.randn(7, 3, 5, dtype=F64)
    for got, want in zip(_forward_backward(device, x.to(DEVICE)), _forward_backward(cpu, x)):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("cls,kw", LAYERS, ids=LAYER_IDS)
def test_a_layer_trains_on_the_device_in_bf16_autocast(cls, kw):
    """Masks drawn on the device, forward under bf16 autocast: autocast's dtype or torch.nn's,
    finite gradients for every parameter, and in eval close to float32."""
    torch.manual_seed(0)
    layer = cls(5, 8, num_layers=2, **kw).to(DEVICE).train()
    x = torch.randn(7, 3, 5, device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        out, _ = layer(x)
        torch_dtype = getattr(torch.nn, cls.__name__)(5, 8).to(DEVICE)(x)[0].dtype
    # The step loop hands on autocast's dtype; the fused path torch.nn's, which on CUDA can be
    # float16 under bf16 autocast (cuDNN's autocast wrapper, PyTorch's
    # aten/src/ATen/cudnn/AutocastRNN.cpp, casts to half; gpu_session.sh's device.txt records it).
    assert out.dtype in (torch.bfloat16, torch_dtype)
    out.float().pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    layer.eval()
    want, _ = layer(x)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        got, _ = layer(x)
    torch.testing.assert_close(got.float(), want, atol=5e-2, rtol=0)


def test_a_compiled_stepwise_layer_on_the_device_matches_eager(monkeypatch):
    monkeypatch.setattr(torch._dynamo.config, "allow_rnn", True)
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = rnnreg.LSTM(5, 8, zoneout_h_p=0.1, zoneout_c_p=0.3, peepholes=True).to(DEVICE).eval()
    x = torch.randn(7, 3, 5, device=DEVICE)
    want, _ = layer(x)
    got, _ = torch.compile(layer)(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_grud_and_clockwork_run_their_fast_loops_on_the_device():
    """GRU-D (its step compiled on a GPU by default) and Clockwork (the step loop off the CPU)
    against their reference implementations, in eval, outputs and input gradients."""
    torch.manual_seed(0)
    D, H, T, B = 3, 6, 9, 2
    x, delta = torch.randn(T, B, D, dtype=F64), torch.rand(T, B, D, dtype=F64)
    mask = (torch.rand(T, B, D) > 0.3).to(F64)
    pairs = [(GRUD(D, H, zoneout_h_p=0.2, recurrent_dropout=0.2, implementation=impl).double()
              for impl in ("fast", "reference")),
             (ClockworkRNN(D, H, (1, 2, 4), zoneout_h_p=0.2, implementation=impl, dtype=F64)
              for impl in ("fast", "reference"))]
    for fast, slow in pairs:
        slow.load_state_dict(fast.state_dict())
        results = []
        for layer, device in ((fast.to(DEVICE).eval(), DEVICE), (slow.eval(), "cpu")):
            xi = x.to(device).requires_grad_()
            args = (xi, mask.to(device), delta.to(device)) if isinstance(layer, GRUD) else (xi,)
            out, _ = layer(*args)
            out.pow(2).sum().backward()
            results.append((out.detach().cpu(), xi.grad.cpu()))
        for got, want in zip(*results):
            torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)
