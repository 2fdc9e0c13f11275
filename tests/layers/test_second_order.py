"""Second-order gradients (a gradient penalty, a Hessian-vector product) through rnnreg layers
are either correct or refused at the second backward, never silently wrong: the hand-written
backward passes (the C++ kernels, the step loop, the Clockwork RNN's loop) refuse a second
backward (kernels/refuse_twice.py), the fused path differentiates twice through torch's own
kernels, and the plain-autograd reference is the twin both are checked against.

A known trap: torch's ``once_differentiable`` raises only when the incoming gradient requires
grad, so with a loss linear in the output, or under ``torch.autograd.grad(..., inputs=...)``, the
second-order terms came back None or wrong without an error (the step loop and the Clockwork RNN
did that before; ``test_every_hand_written_backward_refuses_every_second_order_route``)."""

from __future__ import annotations

import pytest
import torch

import rnnreg
from rnnreg.kernels.clockwork import clockwork_fast
from rnnreg.kernels.fast import fast_available
from rnnreg.kernels.steploop import gru_steploop, lstm_steploop, rnn_steploop
from rnnreg.layers.clockwork import ClockworkRNN

I, H, T, B = 3, 4, 5, 2
STEPWISE = [("lstm", {"zoneout_h_p": 0.3, "zoneout_c_p": 0.2}), ("lstm", {"peepholes": True}),
            ("lstm", {"recurrent_dropout": 0.3}), ("gru", {"zoneout_h_p": 0.3}),
            ("rnn", {"nonlinearity": "trec"}), ("lstm", {})]
CLASSES = {"lstm": rnnreg.LSTM, "gru": rnnreg.GRU, "rnn": rnnreg.RNN}


def _penalty_grads(layer, x):
    """x.grad and weight_hh_l0.grad of a gradient penalty: ||d sum(out^2) / dx||^2."""
    out, _ = layer(x)
    g, = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
    g.pow(2).sum().backward()
    return x.grad, layer.weight_hh_l0.grad


@pytest.mark.skipif(not fast_available(), reason="the C++ extension could not be built here")
@pytest.mark.parametrize("cell,kw", STEPWISE, ids=[f"{c}-{'-'.join(k) or 'plain'}" for c, k in STEPWISE])
@pytest.mark.parametrize("train", [False, True])
def test_the_stepwise_kernel_refuses_a_second_backward(cell, kw, train):
    torch.manual_seed(0)
    layer = CLASSES[cell](I, H, implementation="stepwise", **kw).train(train)
    x = torch.randn(T, B, I, requires_grad=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        _penalty_grads(layer, x)
    # A Hessian-vector product over the weights is refused the same way.
    out, _ = layer(x)
    grads = torch.autograd.grad(out.pow(2).sum(), list(layer.parameters()), create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        sum(g.pow(2).sum() for g in grads).backward()


@pytest.mark.parametrize("cell,kw", STEPWISE[:4], ids=["zoneout", "peepholes", "recurrent-dropout", "gru-zoneout"])
def test_the_reference_twin_gives_second_order_gradients_in_eval(cell, kw):
    """implementation="reference" is plain autograd: double backward works and gradgradcheck holds."""
    torch.manual_seed(0)
    layer = CLASSES[cell](I, H, implementation="reference", **kw).double().eval()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda inp: layer(inp)[0], (x,))
    gx, gw = _penalty_grads(layer, x)
    assert gx.abs().sum() > 0 and gw is not None and gw.abs().sum() > 0


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_fused_path_differentiates_twice_like_the_reference(cell):
    torch.manual_seed(0)
    fused = CLASSES[cell](I, H, implementation="fused").double().eval()
    reference = CLASSES[cell](I, H, implementation="reference").double().eval()
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    for got, want in zip(_penalty_grads(fused, x1), _penalty_grads(reference, x2)):
        torch.testing.assert_close(got, want)


def _steploop(cell):
    """A direct step-loop call in float64 on the CPU (torch pointwise ops): (run, weights)."""
    gen = torch.Generator().manual_seed(3)
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    w_ih, w_hh = (torch.randn(gates * H, n, generator=gen, dtype=torch.float64, requires_grad=True)
                  for n in (I, H))
    h0 = torch.zeros(B, H, dtype=torch.float64)
    keep = torch.full((T, B, H), 0.25, dtype=torch.float64)  # zoneout weights, as in eval

    def run(x):
        if cell == "lstm":
            return lstm_steploop(x, h0, h0, w_ih, w_hh, None, None, keep_h=keep, keep_c=keep)[0]
        fn = gru_steploop if cell == "gru" else rnn_steploop
        return fn(x, h0, w_ih, w_hh, None, None, keep_h=keep)
    return run, [w_ih, w_hh]


def _layer(module, **call):
    module.zero_grad(set_to_none=True)
    return (lambda x: module(x.to(module_dtype(module)), **call)[0]), [p for p in module.parameters()]


def module_dtype(module):
    return next(module.parameters()).dtype


def _clockwork_steploop():
    """clockwork_fast's step-loop backend (the GPU's route) on the CPU, float64."""
    gen = torch.Generator().manual_seed(4)
    w_hh = torch.randn(H, H, generator=gen, dtype=torch.float64).triu().requires_grad_()
    w_ih = torch.randn(H, I, generator=gen, dtype=torch.float64, requires_grad=True)
    hold = (torch.arange(T, dtype=torch.float64)[:, None, None] % 2).expand(T, 1, H)  # (T, 1, H)
    h0 = torch.zeros(B, H, dtype=torch.float64)
    return (lambda x: clockwork_fast(x @ w_ih.t(), h0, w_hh, hold, None, backend="steploop")), [w_ih, w_hh]


HAND_WRITTEN = {
    "steploop-lstm": lambda: _steploop("lstm"),
    "steploop-gru": lambda: _steploop("gru"),
    "steploop-rnn": lambda: _steploop("rnn"),
    # A bf16 model's stepwise layers run the step loop on the CPU too.
    "bf16-gru-layer": lambda: _layer(rnnreg.GRU(I, H, zoneout_h_p=0.3).to(torch.bfloat16).train()),
    "clockwork-python": lambda: _layer(ClockworkRNN(I, H, (1, 2), zoneout_h_p=0.2, dtype=torch.float64)),
    "clockwork-steploop": _clockwork_steploop,
}
if fast_available():
    HAND_WRITTEN["cpp-lstm-zoneout"] = lambda: _layer(
        rnnreg.LSTM(I, H, implementation="stepwise", zoneout_h_p=0.3, zoneout_c_p=0.2).double())


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_every_hand_written_backward_refuses_every_second_order_route(name):
    """A linear loss (its gradient a constant, no graph behind it), a nonlinear one, a penalty
    through .backward() or through autograd.grad(inputs=...), and a Hessian-vector product over
    the weights alone: every route reaches the refusal; none returns None or a partial term."""
    torch.manual_seed(0)
    run, weights = HAND_WRITTEN[name]()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    c = torch.randn(T, B, H, dtype=torch.float64)
    losses = {"linear": lambda out: (out * c.to(out.dtype)).sum(), "square": lambda out: out.float().pow(2).sum()}
    for kind, loss_of in losses.items():
        grads = torch.autograd.grad(loss_of(run(x)), [x, *weights], create_graph=True)
        with pytest.raises(RuntimeError, match="differentiate twice"):
            sum(g.float().pow(2).sum() for g in grads).backward()
        grads = torch.autograd.grad(loss_of(run(x)), [x, *weights], create_graph=True)
        with pytest.raises(RuntimeError, match="differentiate twice"):
            torch.autograd.grad(sum(g.float().pow(2).sum() for g in grads), [x, weights[-1]])
    xs = x.detach()  # a Hessian-vector product over the weights: the input needs no gradient
    grads = torch.autograd.grad(losses["square"](run(xs)), weights, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        torch.autograd.grad(sum((g * torch.ones_like(g)).sum() for g in grads), weights)


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_create_graph_leaves_the_first_order_gradients_as_they_are(name):
    """Asking for a graph of the gradients (then using them only as values) changes nothing."""
    torch.manual_seed(0)
    run, weights = HAND_WRITTEN[name]()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    plain = torch.autograd.grad(run(x).float().pow(2).sum(), [x, *weights])
    torch.manual_seed(1)
    graphed = torch.autograd.grad(run(x).float().pow(2).sum(), [x, *weights], create_graph=True)
    for got, want in zip(graphed, plain):
        assert got.requires_grad
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=0)
