"""Forward-mode AD and torch.func transforms (jvp, jacfwd, jacrev, grad, vmap) through every layer.

The C++ stepwise kernel, the step loop and the Clockwork fast path have hand-written backward
passes and no tangent or batching rule. Under a transform, jvp / jacfwd returned zero tangents
without a word and grad / jacrev / forward_ad raised; now such a call takes the plain-autograd
twin (``kernels.pick_kernel``, ``kernels/clockwork.py``), whose derivatives are autograd's own.
The fused path is torch's, which torch.func handles. Each result is compared with the reference
implementation (``implementation="reference"``) under the same transform, in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, vmap

import rnnreg
from rnnreg.layers.clockwork import ClockworkRNN

LAYERS = [(rnnreg.LSTM, {"implementation": "stepwise"}),
          (rnnreg.LSTM, {"zoneout_h_p": 0.2, "zoneout_c_p": 0.3, "peepholes": True}),
          (rnnreg.LSTM, {"recurrent_dropout": 0.3, "recurrent_dropout_mode": "semeniuta",
                         "implementation": "stepwise"}),
          (rnnreg.GRU, {"zoneout_h_p": 0.2}), (rnnreg.RNN, {"nonlinearity": "trec", "trec_threshold": 0.0})]
FUSED = [(rnnreg.LSTM, {"implementation": "fused"}), (rnnreg.GRU, {"implementation": "fused"})]
IDS = [f"{c.__name__}-{'-'.join(k)}" for c, k in LAYERS + FUSED]


def pair(cls, kw):
    """An eval-mode float64 layer and its reference twin with the same weights."""
    torch.manual_seed(0)
    layer = cls(3, 4, **kw).double().eval()
    twin = cls(3, 4, **{**kw, "implementation": "reference"}).double().eval()
    twin.load_state_dict(layer.state_dict())
    return layer, twin


@pytest.fixture
def x():
    return torch.randn(4, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("cls,kw", LAYERS + FUSED, ids=IDS)
def test_tangents_and_jacobians_equal_the_reference(cls, kw, x):
    layer, twin = pair(cls, kw)
    v = torch.randn_like(x)
    tangent = jvp(lambda i: layer(i)[0], (x,), (v,))[1]
    assert tangent.abs().sum() > 0  # was exactly zero through the C++ kernel
    torch.testing.assert_close(tangent, jvp(lambda i: twin(i)[0], (x,), (v,))[1])
    for transform in (jacfwd, jacrev):
        torch.testing.assert_close(transform(lambda i: layer(i)[0])(x), transform(lambda i: twin(i)[0])(x))
    with fwAD.dual_level():
        out = fwAD.unpack_dual(layer(fwAD.make_dual(x, v))[0]).tangent
    torch.testing.assert_close(out, tangent)


@pytest.mark.parametrize("cls,kw", LAYERS + FUSED, ids=IDS)
def test_parameter_gradients_and_vmap_equal_the_reference(cls, kw, x):
    layer, twin = pair(cls, kw)
    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(module):
        return lambda p, i: functional_call(module, p, (i,))[0].pow(2).sum()

    got, want = grad(loss(layer))(params, x), grad(loss(twin))(params, x)
    for name in params:
        torch.testing.assert_close(got[name], want[name], msg=name)
    if kw.get("implementation") == "fused":
        return  # torch has no batching rule for its fused RNN ops: torch.nn's layers fail under vmap too
    # vmap over a leading axis of unbatched (T, I) sequences
    torch.testing.assert_close(vmap(lambda s: layer(s)[0])(x.transpose(0, 1)),
                               vmap(lambda s: twin(s)[0])(x.transpose(0, 1)))


@pytest.mark.parametrize("cls", [rnnreg.LSTM, rnnreg.GRU], ids=lambda c: c.__name__)
def test_a_bf16_model_s_step_loop_gives_way_to_the_reference_too(cls, x):
    """A bf16 model runs the step loop (its own hand-written backward) rather than the C++ kernel."""
    torch.manual_seed(0)
    layer = cls(3, 4, zoneout_h_p=0.2).eval().bfloat16()
    twin = cls(3, 4, zoneout_h_p=0.2, implementation="reference").eval().bfloat16()
    twin.load_state_dict(layer.state_dict())
    xb, v = x.bfloat16(), torch.randn_like(x).bfloat16()
    tangent = jvp(lambda i: layer(i)[0], (xb,), (v,))[1]
    assert tangent.abs().sum() > 0
    torch.testing.assert_close(tangent, jvp(lambda i: twin(i)[0], (xb,), (v,))[1])


def test_the_clockwork_rnn_under_transforms_equals_its_reference(x):
    torch.manual_seed(0)
    layer = ClockworkRNN(3, 4, periods=[1, 2]).double().eval()
    twin = ClockworkRNN(3, 4, periods=[1, 2], implementation="reference").double().eval()
    twin.load_state_dict(layer.state_dict())
    v = torch.randn_like(x)
    tangent = jvp(lambda i: layer(i)[0], (x,), (v,))[1]
    assert tangent.abs().sum() > 0
    torch.testing.assert_close(tangent, jvp(lambda i: twin(i)[0], (x,), (v,))[1])
    torch.testing.assert_close(jacrev(lambda i: layer(i)[0])(x), jacrev(lambda i: twin(i)[0])(x))


def test_the_clockwork_rnn_under_a_transform_and_cpu_autocast():
    """The fallback keeps the fast path's float32 inside CPU autocast (it failed on a dtype
    mismatch in torch.lerp), close to the float32 result."""
    torch.manual_seed(0)
    layer = ClockworkRNN(3, 4, periods=[1, 2]).eval()
    x, v = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    want = jvp(lambda i: layer(i)[0], (x,), (v,))[1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = jvp(lambda i: layer(i)[0], (x,), (v,))[1]
    torch.testing.assert_close(got.float(), want, rtol=5e-2, atol=5e-2)
