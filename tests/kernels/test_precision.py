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
    assert out.dtype == _torch_dtype(cls, dtype)
    torch.testing.assert_close(out.float(), want, atol=TOLERANCE[dtype], rtol=0)
    layer.train()
    with torch.autocast("cpu", dtype=dtype):
        out, _ = layer(x)
    out.float().pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in layer.parameters())


def _torch_dtype(cls, dtype):
    """The dtype torch.nn's own layer hands on under CPU autocast (GRU: float32). oneDNN's LSTM
    has no primitive for fp16, nor for bf16 on a CPU without native bf16 (torch.nn.LSTM fails
    there): autocast's dtype, which torch.nn.LSTM returns where it runs."""
    with torch.autocast("cpu", dtype=dtype):
        try:
            return getattr(torch.nn, cls.__name__)(3, 8)(torch.randn(2, 1, 3))[0].dtype
        except RuntimeError:  # "could not create a primitive descriptor": oneDNN's LSTM only
            assert cls is rnnreg.LSTM
            return dtype


def test_the_fused_lstm_runs_under_bf16_autocast_where_torch_nn_lstm_fails():
    # torch.nn.LSTM fails under CPU bf16 autocast where oneDNN has no bf16 LSTM ("could not create
    # a primitive descriptor", e.g. AVX2-only CPUs): there the fused LSTM is upcast, elsewhere it
    # is handed to oneDNN's bf16 primitive as torch.nn.LSTM's is.
    torch.manual_seed(0)
    layer = rnnreg.LSTM(3, 8, num_layers=2)
    x = torch.randn(6, 2, 3)
    want = layer(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want, atol=TOLERANCE[torch.bfloat16], rtol=0)
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("passthrough", [True, False])
def test_bf16_passthrough_hands_the_kernel_autocast_or_float32(passthrough):
    seen = []

    @outside_cpu_autocast(bf16_passthrough=lambda: passthrough)
    def doubled(x):  # its own name: the upcast is logged once per kernel name
        seen.append((torch.is_autocast_enabled("cpu"), x.dtype))
        return x * 2

    x = torch.ones(3, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = doubled(x)
    assert seen == [(True, torch.bfloat16)] if passthrough else seen == [(False, torch.float32)]
    assert out.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.float16):  # fp16 is never passed through
        doubled(x)
    assert seen[-1] == (False, torch.float32)


def test_the_onednn_bf16_lstm_probe_says_what_torch_nn_lstm_does():
    from rnnreg.kernels.precision import onednn_bf16_lstm

    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(3, 4)(torch.randn(2, 1, 3))
        works = True
    except RuntimeError:
        works = False
    assert onednn_bf16_lstm() == works


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


# ------------------------------------------------------------------------------------------------
# bf16 products: under CPU bf16 autocast on a CPU with native bf16, the LSTM kernel computes its
# matrix products from bf16 operands (kernels/precision.py, csrc/recurrence.h RecGemm / mm_f32).

BF16_CASES = {"plain": {}, "zoneout": {"keep": True}, "recurrent_dropout": {"rec": True},
              "peepholes": {"peep": True}, "all": {"keep": True, "rec": True, "peep": True}}


def _lstm_case(keep=False, rec=False, peep=False, T=9, B=4, I=24, H=40, seed=0):
    """Float32 arguments of the LSTM op / lstm_reference, weights scaled as torch.nn's init."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (torch.rand(*s, generator=g) * 2 - 1) * scale  # noqa: E731
    k = H ** -0.5
    args = [r(T, B, I), r(B, H, scale=0.5), r(B, H, scale=0.5), r(4 * H, I, scale=k), r(4 * H, H, scale=k),
            r(4 * H, scale=k), r(4 * H, scale=k), r(3 * H, scale=k) if peep else None,
            (torch.rand(B, H, generator=g) > 0.3).float() / 0.7 if rec else None,
            (torch.rand(T, B, H, generator=g) < 0.2).float() if keep else None,
            (torch.rand(T, B, H, generator=g) < 0.3).float() if keep else None, None]
    return args


def _run_op(args, bf16):
    """Forward and backward of the registered op with bf16 products on or off: outputs + grads."""
    leaves = [a.clone().requires_grad_() if a is not None and i in (0, 1, 2, 3, 4, 5, 6, 7) else a
              for i, a in enumerate(args)]
    hs, cs = torch.ops.rnnreg.lstm_forward(*leaves, True, bf16)[:2]
    (hs.pow(2).sum() + cs.sum()).backward()
    return [hs.detach(), cs.detach()] + [a.grad for a in leaves[:8] if a is not None]


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.fixture
def kernel():
    from rnnreg.kernels import fast

    if not fast.fast_available():
        pytest.skip("the C++ extension could not be built here")
    return fast


@pytest.mark.parametrize("case", list(BF16_CASES), ids=list(BF16_CASES))
def test_bf16_products_are_as_close_to_float64_as_autocast_s_own_products(kernel, case):
    """The twin check: against the float64 reference, the kernel with bf16 products errs no more
    than the reference recurrences themselves under bf16 autocast (every product in bf16), outputs
    and every gradient; and it does take the bf16 route (it differs from its float32 products)."""
    from rnnreg.kernels.reference import lstm_reference

    args = _lstm_case(**BF16_CASES[case])
    exact = _reference_run(lstm_reference, [a.double() if a is not None else None for a in args])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = _reference_run(lstm_reference, args)
    got = _run_op(args, bf16=True)
    fp32 = _run_op(args, bf16=False)
    for g, a, e, f in zip(got, autocast, exact, fp32):
        assert _rel(g, e) <= 2 * _rel(a, e) + 1e-4, (case, _rel(g, e), _rel(a, e))
        assert _rel(f, e) < 1e-5   # float32 products: float32's accuracy
    assert max(_rel(g, f) for g, f in zip(got, fp32)) > 1e-4   # the bf16 route was taken


def test_the_backward_takes_bf16_products_and_keeps_dg0_without_an_h0_gradient(kernel):
    """The backward op itself, on the same saved tensors: with bf16 products its gradients differ
    from its float32 products' (the route was taken) and stay close to them; and dG_0, which enters
    the weight gradients, is kept rounded even when no h0 gradient asks for the product at t = 0."""
    args = _lstm_case(keep=True)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rec, keep_h, keep_c, upd = args
    hs, cs, gates, cn, hin = torch.ops.rnnreg.lstm_forward(*args, True, True)
    dhs, dcs = torch.randn_like(hs), torch.randn_like(cs)
    saved = (x, h0, c0, w_ih, w_hh, peep, rec, keep_h, keep_c, upd, hs, cs, gates, cn, hin)
    every = 1 | 2 | 4 | 8 | 16 | 32 | 64   # x, h0, c0, W_ih, W_hh, b_ih, b_hh
    low = torch.ops.rnnreg.lstm_backward(dhs, dcs, *saved, every, True)
    high = torch.ops.rnnreg.lstm_backward(dhs, dcs, *saved, every, False)
    for i in (0, 3, 4):  # dx, dW_ih, dW_hh: products of the kept dG
        assert 1e-4 < _rel(low[i], high[i]) < 3e-2, (i, _rel(low[i], high[i]))
    no_h0 = torch.ops.rnnreg.lstm_backward(dhs, dcs, *saved, every & ~2, True)
    for i in (0, 2, 3, 4, 5):
        torch.testing.assert_close(no_h0[i], low[i], atol=0, rtol=0)


def _reference_run(ref, args):
    leaves = [a.clone().requires_grad_() if a is not None and i < 8 else a for i, a in enumerate(args)]
    hs, cs = ref(*leaves)
    (hs.float().pow(2).sum() + cs.float().sum()).backward()
    return [hs.detach(), cs.detach()] + [a.grad for a in leaves[:8] if a is not None]


def test_bf16_products_in_eval_and_for_float64_operands(kernel):
    """Inference takes the same products (no backward kept); float64 operands ignore the flag."""
    args = _lstm_case(rec=True)
    train_hs = torch.ops.rnnreg.lstm_forward(*args, True, True)[0]
    eval_hs = torch.ops.rnnreg.lstm_forward(*args, False, True)[0]
    torch.testing.assert_close(eval_hs, train_hs, atol=0, rtol=0)
    d = [a.double() if a is not None else None for a in args]
    torch.testing.assert_close(torch.ops.rnnreg.lstm_forward(*d, False, True)[0],
                               torch.ops.rnnreg.lstm_forward(*d, False, False)[0], atol=0, rtol=0)


def test_bf16_products_are_asked_for_only_under_bf16_autocast_on_a_native_bf16_cpu(kernel, monkeypatch, caplog):
    from rnnreg.kernels import fast_eager, precision

    seen = []
    real = fast_eager.lstm_forward  # eager calls take it (the registered op's twin)
    monkeypatch.setattr(fast_eager, "lstm_forward", lambda *a: seen.append(a[-1]) or real(*a))
    args = _lstm_case()
    kernel.lstm_fast(*args)
    with torch.autocast("cpu", dtype=torch.float16):
        kernel.lstm_fast(*args)
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    monkeypatch.setattr(precision, "_logged", set())   # logged once per process: start afresh
    with caplog.at_level(logging.INFO, logger="rnnreg.kernels.precision"), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        out = kernel.lstm_fast(*args)[0]
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kernel.lstm_fast(*args)
    assert seen == [False, False, True, False]
    assert out.dtype == torch.bfloat16
    assert any("with bf16 matrix products" in r.message for r in caplog.records)
