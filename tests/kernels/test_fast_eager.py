"""The recurrences' eager route (kernels/fast_eager.py) against the registered ops.

Plain eager calls of ``lstm_fast`` / ``gru_fast`` / ``rnn_fast`` run the native kernels under a
torch.autograd.Function; anything recording the call (a compiler, a tracer, a fake tensor mode)
gets the registered ops. Both routes must give the same bits, forward and backward, and both must
refuse a second backward.
"""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from rnnreg.kernels import fast, fast_eager

pytestmark = pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")

T, B, I, H = 4, 3, 5, 6


def _r(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype, requires_grad=True)


def _masks(dtype, with_c=True):
    rec = (torch.rand(B, H) > 0.3).to(dtype) / 0.7
    upd = (torch.rand(T, B, H) > 0.3).to(dtype) / 0.7
    keep_h, keep_c = torch.rand(T, B, H, dtype=dtype), torch.rand(T, B, H, dtype=dtype)
    return [rec, keep_h, keep_c, upd] if with_c else [rec, keep_h, upd]


def _cases(dtype):
    """(eager function, registered op, differentiable inputs, other arguments) per cell."""
    lstm = [_r(T, B, I, dtype=dtype), _r(B, H, dtype=dtype), _r(B, H, dtype=dtype), _r(4 * H, I, dtype=dtype),
            _r(4 * H, H, dtype=dtype), _r(4 * H, dtype=dtype), _r(4 * H, dtype=dtype), _r(3 * H, dtype=dtype)]
    gru = [_r(T, B, I, dtype=dtype), _r(B, H, dtype=dtype), _r(3 * H, I, dtype=dtype), _r(3 * H, H, dtype=dtype),
           _r(3 * H, dtype=dtype), _r(3 * H, dtype=dtype)]
    rnn = [_r(T, B, I, dtype=dtype), _r(B, H, dtype=dtype), _r(H, I, dtype=dtype), _r(H, H, dtype=dtype),
           _r(H, dtype=dtype), _r(H, dtype=dtype)]
    return {"lstm": (fast_eager.lstm_forward, torch.ops.rnnreg.lstm_forward, lstm, [*_masks(dtype), True, False]),
            "gru": (fast_eager.gru_forward, torch.ops.rnnreg.gru_forward, gru, [*_masks(dtype, False), True]),
            "rnn": (fast_eager.rnn_forward, torch.ops.rnnreg.rnn_forward, rnn, [*_masks(dtype, False)[:2], 2, 0.1, True])}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_the_eager_route_gives_the_registered_ops_bits(cell, dtype):
    torch.manual_seed(0)
    eager, registered, inputs, rest = _cases(dtype)[cell]
    results = []
    for route in (eager, registered):
        out = route(*inputs, *rest)
        seqs = out[:2] if cell == "lstm" else out[:1]
        loss = sum((s * torch.linspace(-1, 1, H, dtype=dtype)).sum() for s in seqs)
        results.append((*seqs, *torch.autograd.grad(loss, inputs)))
    for got, want in zip(*results):
        assert torch.equal(got, want)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_eager_route_refuses_a_second_backward(cell):
    torch.manual_seed(0)
    eager, _, inputs, rest = _cases(torch.float64)[cell]
    (gx,) = torch.autograd.grad(eager(*inputs, *rest)[0].pow(2).sum(), inputs[0], create_graph=True)
    with pytest.raises(RuntimeError, match="cannot differentiate twice"):
        gx.sum().backward()


def test_only_unrecorded_calls_take_the_eager_route():
    x = torch.randn(2, 2)
    assert fast_eager.eager_call(x, None)
    with FakeTensorMode() as mode:
        assert not fast_eager.eager_call(mode.from_tensor(x))
    assert fast_eager.eager_call(torch.nn.Parameter(x), x)

    class Sub(torch.Tensor):
        pass

    assert not fast_eager.eager_call(x.as_subclass(Sub))  # a subclass: left to the registered op


def test_a_compiled_call_takes_the_registered_op(monkeypatch):
    # torch.compile must see the registered op (fake kernel, autograd formula): were the eager
    # route taken while compiling, dynamo would trace into the autograd.Function instead.
    calls = []
    monkeypatch.setattr(fast_eager, "lstm_forward", lambda *a: calls.append(1))
    torch.manual_seed(0)
    _, _, inputs, rest = _cases(torch.float32)["lstm"]
    args = [t.detach() for t in inputs]
    compiled = torch.compile(lambda *a: fast.lstm_fast(*a)[0], backend="eager", fullgraph=True)
    compiled(*args)
    assert calls == []


def test_the_eager_forward_runs_with_autocast_off():
    # Under CPU autocast with a float64 argument the kernel is called with autocast still on
    # (float64 is outside autocast's reach, kernels/precision.py); the kernel's own products
    # must stay float32 there, as the registered op's autocast registration makes them.
    torch.manual_seed(0)
    _, _, inputs, _ = _cases(torch.float32)["lstm"]
    args = [t.detach() for t in inputs]
    args[1] = args[1].double()  # h0 in float64: lstm_fast casts it to x's dtype
    want = fast.lstm_fast(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fast.lstm_fast(*args)
    for g, w in zip(got, want):
        assert g.dtype == torch.float32 and torch.equal(g, w)


def test_create_graph_gradients_can_be_modified_in_place():
    # As the registered route's: plain tensors, not views made inside a custom Function.
    torch.manual_seed(0)
    eager, _, inputs, rest = _cases(torch.float64)["lstm"]
    (gx,) = torch.autograd.grad(eager(*inputs, *rest)[0].sum(), inputs[0], create_graph=True)
    gx.mul_(2)
