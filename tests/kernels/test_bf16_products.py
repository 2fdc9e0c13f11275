"""bf16 products: under CPU bf16 autocast on a CPU with native bf16, the LSTM, GRU and Elman
kernels compute their matrix products from bf16 operands with float32 accumulation, as autocast's
own products do; gates, states, zoneout and masks stay float32 (kernels/precision.py, csrc/
rec_gemm.h RecGemm, csrc/recurrence.h mm_f32)."""

from __future__ import annotations

import logging

import pytest
import torch

from rnnreg.kernels.reference import gru_reference, lstm_reference, rnn_reference

CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
LEAVES = {"lstm": 8, "gru": 6, "rnn": 6}  # the leading arguments that take gradients
REFERENCE = {"lstm": lstm_reference, "gru": gru_reference, "rnn": rnn_reference}
CASES = {"plain": {}, "zoneout": {"keep": True}, "recurrent_dropout": {"rec": True},
         "peepholes": {"peep": True}, "all": {"keep": True, "rec": True, "peep": True}}
# (cell, case): peepholes are the LSTM's only.
CELL_CASES = [(c, k) for c in CELLS for k in CASES if c == "lstm" or k != "peepholes"]
# Backward bits (kernels/fast_ops.py): x, h0, c0, W_ih, W_hh, b_ih, b_hh.
X, H0, C0, WIH, WHH, BIH, BHH = 1, 2, 4, 8, 16, 32, 64
EVERY = {"lstm": X | H0 | C0 | WIH | WHH | BIH | BHH, "gru": X | H0 | WIH | WHH | BIH | BHH,
         "rnn": X | H0 | WIH | WHH | BIH | BHH}
# The backward's outputs: which are products of the bf16 dG (dx, dW_ih, dW_hh), which is dh0.
PRODUCTS = {"lstm": (0, 3, 4), "gru": (0, 2, 3), "rnn": (0, 2, 3)}
OUTPUTS = {"lstm": 7, "gru": 6, "rnn": 5}


def _case(cell, keep=False, rec=False, peep=False, T=9, B=4, I=24, H=40, seed=0):
    """Float32 arguments of the cell's op / reference up to the masks, weights scaled as
    torch.nn's init: x, the states, W_ih, W_hh, b_ih, b_hh, (LSTM: peepholes), the masks."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (torch.rand(*s, generator=g) * 2 - 1) * scale  # noqa: E731
    G, k = GATES[cell], H ** -0.5
    states = [r(B, H, scale=0.5) for _ in range(2 if cell == "lstm" else 1)]
    params = [r(G * H, I, scale=k), r(G * H, H, scale=k), r(G * H, scale=k), r(G * H, scale=k)]
    rec_mask = (torch.rand(B, H, generator=g) > 0.3).float() / 0.7 if rec else None
    keep_h = (torch.rand(T, B, H, generator=g) < 0.2).float() if keep else None
    if cell == "lstm":
        keep_c = (torch.rand(T, B, H, generator=g) < 0.3).float() if keep else None
        masks = [r(3 * H, scale=k) if peep else None, rec_mask, keep_h, keep_c, None]
    else:
        masks = [rec_mask, keep_h] + ([None] if cell == "gru" else [])
    return [r(T, B, I), *states, *params, *masks]


def _forward(cell, args, train, bf16):
    """The registered op's forward: all its outputs (the sequences, then what backward reads)."""
    if cell == "lstm":
        return torch.ops.rnnreg.lstm_forward(*args, train, bf16)
    if cell == "gru":
        return torch.ops.rnnreg.gru_forward(*args, train, bf16)
    return torch.ops.rnnreg.rnn_forward(*args, 0, 1.0, train, bf16)  # tanh


def _sequences(cell, out):
    """The op's or the reference's sequences: (hs, cs) for the LSTM, (hs,) for the others."""
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out[:2] if cell == "lstm" else out[:1])


def _run(cell, args, call):
    """Outputs and every gradient of ``call(leaves)`` under loss sum(h^2) (+ sum(c))."""
    n = LEAVES[cell]
    leaves = [a.clone().requires_grad_() if a is not None and i < n else a for i, a in enumerate(args)]
    seqs = _sequences(cell, call(leaves))
    loss = seqs[0].float().pow(2).sum() + sum(s.float().sum() for s in seqs[1:])
    loss.backward()
    return [s.detach() for s in seqs] + [a.grad for a in leaves[:n] if a is not None]


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.fixture
def kernel():
    from rnnreg.kernels import fast

    if not fast.fast_available():
        pytest.skip("the C++ extension could not be built here")
    return fast


@pytest.mark.parametrize("cell,case", CELL_CASES, ids=[f"{c}-{k}" for c, k in CELL_CASES])
def test_bf16_products_are_as_close_to_float64_as_autocast_s_own_products(kernel, cell, case):
    """The twin check: against the float64 reference, the kernel with bf16 products errs no more
    than the reference recurrences themselves under bf16 autocast (every product in bf16), outputs
    and every gradient; and it does take the bf16 route (it differs from its float32 products)."""
    args = _case(cell, **CASES[case])
    ref = REFERENCE[cell]
    exact = _run(cell, [a.double() if a is not None else None for a in args], lambda a: ref(*a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = _run(cell, args, lambda a: ref(*a))
    got = _run(cell, args, lambda a: _forward(cell, a, True, True))
    fp32 = _run(cell, args, lambda a: _forward(cell, a, True, False))
    assert len(got) == len(exact)
    for g, a, e, f in zip(got, autocast, exact, fp32):
        assert _rel(g, e) <= 2 * _rel(a, e) + 1e-4, (case, _rel(g, e), _rel(a, e))
        assert _rel(f, e) < 1e-5   # float32 products: float32's accuracy
    assert max(_rel(g, f) for g, f in zip(got, fp32)) > 1e-4   # the bf16 route was taken


def _backward(cell, args, out, grads, needs, bf16):
    """The registered backward op on the forward's saved tensors (fast_ops' setup order)."""
    inputs = 5 if cell == "lstm" else 4   # x, the states, W_ih, W_hh
    masks = {"lstm": 5, "gru": 3, "rnn": 2}[cell]   # LSTM: peepholes, then its four masks
    saved = (*args[:inputs], *args[-masks:], *out)
    op = getattr(torch.ops.rnnreg, f"{cell}_backward")
    return op(*grads, *saved, needs, bf16)


@pytest.mark.parametrize("cell", CELLS)
def test_the_backward_takes_bf16_products_and_keeps_dg0_without_an_h0_gradient(kernel, cell):
    """The backward op itself, on the same saved tensors: with bf16 products its gradients differ
    from its float32 products' (the route was taken) and stay close to them; and dG_0, which enters
    the weight gradients, is kept rounded even when no h0 gradient asks for the product at t = 0."""
    args = _case(cell, keep=True)
    out = _forward(cell, args, True, True)
    grads = [torch.randn_like(s) for s in _sequences(cell, out)]
    every = EVERY[cell]
    low = _backward(cell, args, out, grads, every, True)
    high = _backward(cell, args, out, grads, every, False)
    assert len(low) == OUTPUTS[cell]
    for i in PRODUCTS[cell]:
        assert 1e-4 < _rel(low[i], high[i]) < 3e-2, (i, _rel(low[i], high[i]))
    # Deterministic mode fills at::empty with NaN, so the kept buffer cannot inherit dG_0 from the
    # call above through the allocator: the t = 0 rounding itself must write it.
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        no_h0 = _backward(cell, args, out, grads, every & ~H0, True)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    for i in range(OUTPUTS[cell]):
        if i != 1 and low[i].numel() > 0:   # 1: dh0, not asked for
            torch.testing.assert_close(no_h0[i], low[i], atol=0, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_bf16_products_in_eval_and_for_float64_operands(kernel, cell):
    """Inference takes the same products (no backward kept); float64 operands ignore the flag."""
    args = _case(cell, rec=True)
    train_hs = _forward(cell, args, True, True)[0]
    eval_hs = _forward(cell, args, False, True)[0]
    torch.testing.assert_close(eval_hs, train_hs, atol=0, rtol=0)
    d = [a.double() if a is not None else None for a in args]
    torch.testing.assert_close(_forward(cell, d, False, True)[0], _forward(cell, d, False, False)[0],
                               atol=0, rtol=0)
    out = _forward(cell, d, True, True)
    grads = [torch.ones_like(s) for s in _sequences(cell, out)]
    for low, high in zip(_backward(cell, d, out, grads, EVERY[cell], True),
                         _backward(cell, d, out, grads, EVERY[cell], False)):
        torch.testing.assert_close(low, high, atol=0, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_a_layer_under_bf16_autocast_takes_the_bf16_products_both_ways(kernel, cell, monkeypatch):
    """Through the eager route a layer's forward and backward (ctx.bf16) both get the flag: its
    gradients are the registered op's with bf16 products, bit for bit (on any CPU, the flag forced
    on: the products then take torch.mm on bf16 where nothing native runs them)."""
    from rnnreg.kernels import precision

    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    args = _case(cell)[:7 if cell == "lstm" else 6]   # x, the states, weights, biases
    run = getattr(kernel, f"{cell}_fast")

    def layer_call(leaves):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run(*leaves)

    def grads(call, extra=()):
        # A linear loss: its gradient (ones) passes autocast's bf16 outputs unrounded.
        leaves = [a.clone().requires_grad_() if a is not None else a for a in args]
        seqs = _sequences(cell, call(leaves + list(extra)))
        sum(s.float().sum() for s in seqs).backward()
        return [s.detach() for s in seqs], [a.grad for a in leaves if a is not None]

    masks = [None] * {"lstm": 5, "gru": 3, "rnn": 2}[cell]
    (got_seqs, got), (want_seqs, want) = grads(layer_call), grads(lambda a: _forward(cell, a, True, True), masks)
    _, off = grads(lambda a: _forward(cell, a, True, False), masks)
    for g, w in zip(got_seqs + got, want_seqs + want):
        torch.testing.assert_close(g, w.to(g.dtype), atol=0, rtol=0)
    assert max(_rel(g, f) for g, f in zip(got, off)) > 1e-4   # and not the float32 products'


@pytest.mark.parametrize("cell", CELLS)
def test_bf16_products_are_asked_for_only_under_bf16_autocast_on_a_native_bf16_cpu(
        kernel, cell, monkeypatch, caplog):
    from rnnreg.kernels import fast_eager, precision

    seen = []
    real = getattr(fast_eager, f"{cell}_forward")  # eager calls take it (the registered op's twin)
    monkeypatch.setattr(fast_eager, f"{cell}_forward", lambda *a: seen.append(a[-1]) or real(*a))
    run = getattr(kernel, f"{cell}_fast")
    args = _case(cell)[:7 if cell == "lstm" else 6]   # x, the states, weights, biases: no masks
    run(*args)
    with torch.autocast("cpu", dtype=torch.float16):
        run(*args)
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    monkeypatch.setattr(precision, "_logged", set())   # logged once per process: start afresh
    with caplog.at_level(logging.INFO, logger="rnnreg.kernels.precision"), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        out = _sequences(cell, run(*args))[0]
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        run(*args)
    assert seen == [False, False, True, False]
    # What torch.nn's layer hands on under CPU bf16 autocast: float32 from the GRU, which
    # autocast does not list.
    assert out.dtype == (torch.float32 if cell == "gru" else torch.bfloat16)
    assert any("with bf16 matrix products" in r.message for r in caplog.records)
