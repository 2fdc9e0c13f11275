"""The fused path under torch.compile and torch.jit.trace, as torch.nn's layers allow them.

torch.compile crashed on every plain rnnreg layer (torch 2.13 lowers torch.lstm to an
mkldnn_rnn_layer call its schema rejects once the weights require grad); the ATen call now runs
eagerly, a graph break where torch.nn's RNN modules break too. torch.jit.trace failed its
default check because the kernel's training flag followed the grad mode; under tracing it is the
module's mode, as torch.nn passes it. The stepwise configurations failed under compile (their C++
ops had no fake kernels, the mask seed was read with .item()); those calls now run eagerly
inside the compiled module, with the same random stream as eager."""

from __future__ import annotations

import pytest
import torch

import rnnreg

pytestmark = pytest.mark.slow

CLASSES = [rnnreg.LSTM, rnnreg.GRU, rnnreg.RNN]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_compiled_fused_layers_match_eager_in_eval_and_train_in_train_mode(cls):
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, dropout=0.0).eval()
    x = torch.randn(6, 2, 3)
    compiled = torch.compile(layer)
    out, hidden = compiled(x)
    want, want_hidden = layer(x)
    torch.testing.assert_close(out, want)
    for got, ref in zip(hidden if isinstance(hidden, tuple) else (hidden,),
                        want_hidden if isinstance(want_hidden, tuple) else (want_hidden,)):
        torch.testing.assert_close(got, ref)
    layer.train()
    out, _ = compiled(x)
    out.pow(2).sum().backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters()}
    layer.zero_grad()
    layer(x)[0].pow(2).sum().backward()
    for name, p in layer.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, msg=name)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_jit_trace_passes_its_default_check_in_eval(cls):
    torch.manual_seed(0)
    layer = cls(3, 4).eval()
    x = torch.randn(6, 2, 3)
    traced = torch.jit.trace(layer, (x,))        # check_trace=True by default
    x2 = torch.randn(6, 2, 3)
    torch.testing.assert_close(traced(x2)[0], layer(x2)[0])


STEPWISE = [(rnnreg.LSTM, {"zoneout_h_p": 0.1, "zoneout_c_p": 0.2}), (rnnreg.LSTM, {"peepholes": True}),
            (rnnreg.LSTM, {"recurrent_dropout": 0.2}), (rnnreg.LSTM, {"recurrent_dropout": 0.2,
                                                                     "recurrent_dropout_mode": "semeniuta"}),
            (rnnreg.GRU, {"zoneout_h_p": 0.2}), (rnnreg.RNN, {"nonlinearity": "trec"}),
            (rnnreg.LSTM, {"weight_p": 0.3, "input_p": 0.2, "output_p": 0.2, "weight_noise_std": 0.01})]


@pytest.mark.parametrize("cls,kw", STEPWISE, ids=[f"{c.__name__}-{'-'.join(k)}" for c, k in STEPWISE])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_every_regularizer_compiles_and_draws_eager_s_masks(cls, kw, mode):
    """Same seed, same masks: the compiled module's outputs and gradients equal eager's. Masks
    drawn by torch ops inside the graph (weight drop, locked dropout, weight noise) follow
    inductor's own generator unless told to fall back to eager's, as torch.nn.Dropout's do."""
    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    layer = getattr(cls(3, 4, **kw), mode)()
    x = torch.randn(6, 2, 3)
    with inductor_config.patch(fallback_random=True):
        _compare_with_eager(layer, torch.compile(layer), x)


def _compare_with_eager(layer, compiled, x):
    results = []
    for run in (compiled, layer):
        layer.zero_grad()
        torch.manual_seed(1)
        out, _ = run(x)
        out.pow(2).sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in layer.named_parameters()}))
    (got, got_grads), (want, want_grads) = results
    torch.testing.assert_close(got, want)
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], msg=name)
