"""Second-order gradients (a gradient penalty, a Hessian-vector product) through rnnreg layers
are either correct or refused at the second backward, never silently wrong: the C++ kernels'
hand-written backward is marked once-differentiable, the fused path differentiates twice through
torch's own kernels, and the plain-autograd reference is the twin both are checked against."""

from __future__ import annotations

import pytest
import torch

import rnnreg
from rnnreg.kernels.fast import fast_available

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
