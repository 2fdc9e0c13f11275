"""The C++ kernel's registered ops (kernels/fast_ops.py): schema, fake kernels, autograd.

``torch.library.opcheck`` runs each op for real and under FakeTensor / AOTAutograd and compares
(shapes, dtypes, strides, gradients): what torch.compile and torch.export rely on. A fake kernel
that disagreed with the C++ one would make a compiled graph wrong or crash it.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rnnreg.kernels import fast
from rnnreg.kernels.fast import gru_fast, lstm_fast, rnn_fast
from rnnreg.kernels.reference import gru_reference, lstm_reference, rnn_reference

pytestmark = pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")

T, B, I, H = 3, 2, 3, 4
D = torch.float64


def _r(*shape, grad=True):
    return torch.randn(*shape, dtype=D, requires_grad=grad)


def _masks(with_c: bool):
    """rec (B, H), keep_h, keep_c (T, B, H) and update (T, B, H), as the layers hand them on."""
    rec = (torch.rand(B, H, dtype=D) > 0.3).to(D) / 0.7
    upd = (torch.rand(T, B, H, dtype=D) > 0.3).to(D) / 0.7
    keep_h, keep_c = torch.rand(T, B, H, dtype=D), torch.rand(T, B, H, dtype=D)
    return rec, keep_h, (keep_c if with_c else None), upd


def _opcheck(op, args):
    result = torch.library.opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_lstm_op_passes_opcheck(masked, train):
    torch.manual_seed(0)
    grad = train  # without train the op keeps nothing for backward, so it is called without grad
    x, h0, c0 = _r(T, B, I, grad=grad), _r(B, H, grad=grad), _r(B, H, grad=grad)
    w = [_r(4 * H, I, grad=grad), _r(4 * H, H, grad=grad), _r(4 * H, grad=grad), _r(4 * H, grad=grad)]
    peep = _r(3 * H, grad=grad) if masked else None
    rec, keep_h, keep_c, upd = _masks(True) if masked else (None,) * 4
    _opcheck(torch.ops.rnnreg.lstm_forward.default, (x, h0, c0, *w, peep, rec, keep_h, keep_c, upd, train))


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
def test_gru_op_passes_opcheck(masked):
    torch.manual_seed(0)
    x, h0 = _r(T, B, I), _r(B, H)
    w = [_r(3 * H, I), _r(3 * H, H), _r(3 * H), _r(3 * H)]
    rec, keep_h, _, upd = _masks(False) if masked else (None,) * 4
    _opcheck(torch.ops.rnnreg.gru_forward.default, (x, h0, *w, rec, keep_h, upd, True))


@pytest.mark.parametrize("act", [0, 1, 2], ids=["tanh", "relu", "trec"])
def test_rnn_op_passes_opcheck(act):
    torch.manual_seed(0)
    x, h0 = _r(T, B, I), _r(B, H)
    w = [_r(H, I), _r(H, H), _r(H), _r(H)]
    rec, keep_h, _, _ = _masks(False)
    _opcheck(torch.ops.rnnreg.rnn_forward.default, (x, h0, *w, rec, keep_h, act, 0.1, True))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_ops_pass_opcheck_with_bf16_products(cell):
    # float32 operands, so that on a native-bf16 CPU the bf16 products are taken (float64 ignores
    # the flag): the fake kernels and the autograd formula must hold for that route too.
    torch.manual_seed(0)
    f = lambda *shape: torch.randn(*shape, requires_grad=True)  # noqa: E731
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    x, states, w = f(T, B, I), [f(B, H) for _ in range(2 if cell == "lstm" else 1)], [f(G * H, I), f(G * H, H)]
    rec, keep_h, keep_c, upd = (m.float() for m in _masks(True))
    if cell == "lstm":
        args = (x, *states, *w, None, None, f(3 * H), rec, keep_h, keep_c, upd, True, True)
    elif cell == "gru":
        args = (x, *states, *w, f(G * H), f(G * H), rec, keep_h, upd, True, True)
    else:
        args = (x, *states, *w, f(H), None, rec, keep_h, 0, 1.0, True, True)
    _opcheck(getattr(torch.ops.rnnreg, f"{cell}_forward").default, args)


def test_mask_ops_pass_opcheck():
    seed = torch.tensor([123], dtype=torch.int64)
    _opcheck(torch.ops.rnnreg.dropout_mask.default, (seed, torch.empty(()).expand(T, B, H), 0.3))
    _opcheck(torch.ops.rnnreg.keep_mask_const.default, (seed, torch.empty((), dtype=D).expand(T, B, H), 0.3))
    _opcheck(torch.ops.rnnreg.keep_mask.default, (torch.rand(T, B, H), seed))
    _opcheck(torch.ops.rnnreg.normal_noise.default, (seed, torch.empty(()).expand(T, B, H), 0.1))
    _opcheck(torch.ops.rnnreg.dropout_apply.default, (_r(T, B, H), seed, 0.3))


def test_backward_reads_expanded_incoming_gradients():
    """``out.sum()`` hands backward an expanded (stride 0) gradient; the kernel reads memory
    directly, so the op must make it dense first (it once read garbage: NaN gradients)."""
    torch.manual_seed(0)
    cases = [(lstm_fast, lstm_reference, 4, 2), (gru_fast, gru_reference, 3, 1), (rnn_fast, rnn_reference, 1, 1)]
    for fast_fn, ref_fn, gates, states in cases:
        args = [_r(T, B, I)] + [_r(B, H) for _ in range(states)] + [_r(gates * H, I), _r(gates * H, H),
                                                                    _r(gates * H), _r(gates * H)]

        def loss(fn):
            out = fn(*args)
            return sum(o.sum() for o in out) if isinstance(out, tuple) else out.sum()

        for got, want in zip(torch.autograd.grad(loss(fast_fn), args), torch.autograd.grad(loss(ref_fn), args)):
            torch.testing.assert_close(got, want)


def test_a_second_backward_raises_instead_of_being_wrong():
    x, h0, c0 = _r(T, B, I), _r(B, H), _r(B, H)
    w = [_r(4 * H, I), _r(4 * H, H), None, None]
    hs, _ = lstm_fast(x, h0, c0, *w)
    (gx,) = torch.autograd.grad(hs.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="cannot differentiate twice"):
        gx.sum().backward()


def test_the_mask_seed_is_a_tensor_drawn_from_torch_s_generator():
    """Same generator state, same mask; the seed reaches the op as a tensor (nothing read with
    .item() on the traced path), so a trace draws it anew at every call."""
    torch.manual_seed(5)
    a = fast.fast_dropout_mask((T, B, H), 0.5, torch.empty(0))
    b = fast.fast_dropout_mask((T, B, H), 0.5, torch.empty(0))
    torch.manual_seed(5)
    assert torch.equal(fast.fast_dropout_mask((T, B, H), 0.5, torch.empty(0)), a)
    assert not torch.equal(a, b)

    traced = torch.jit.trace(lambda t: fast.fast_keep_mask(t), (torch.full((64,), 0.5),))
    first, second = traced(torch.full((64,), 0.5)), traced(torch.full((64,), 0.5))
    assert not torch.equal(first, second)


def test_under_cpu_autocast_the_ops_compute_in_float32():
    """Registered with autocast: called straight, inside CPU autocast, even with bf16 inputs, an
    op computes in float32 (its own matrix products would otherwise come back in bf16)."""
    torch.manual_seed(0)
    x, h0, c0 = torch.randn(T, B, I), torch.randn(B, H), torch.randn(B, H)
    w = [torch.randn(4 * H, I), torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(4 * H)]
    want = torch.ops.rnnreg.lstm_forward(x, h0, c0, *w, None, None, None, None, None, False)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = torch.ops.rnnreg.lstm_forward(x, h0, c0, *w, None, None, None, None, None, False)[0]
        from_bf16 = torch.ops.rnnreg.lstm_forward(x.bfloat16(), h0, c0, *w, None, None, None, None, None,
                                                  False)[0]
    assert got.dtype == from_bf16.dtype == torch.float32
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(from_bf16, want, atol=2e-2, rtol=2e-2)


class _Recording(TorchDispatchMode):
    """A pass-through dispatch mode that notes which ops ran (as a proxy or fake mode would see them)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("draw", ["dropout", "keep", "keep_const", "noise", "apply"])
def test_eager_calls_and_recorded_calls_give_the_same_values(draw, monkeypatch):
    """Plain eager calls go straight to the C++ kernel; under a recording mode the registered op
    runs instead, with the seed as a tensor. Same generator state, same values either way."""
    like, prob = torch.empty(0), torch.full((T, B, H), 0.3)
    call = {"dropout": lambda: fast.fast_dropout_mask((T, B, H), 0.4, like),
            "keep": lambda: fast.fast_keep_mask(prob),
            "keep_const": lambda: fast.fast_keep_mask_const((T, B, H), 0.3, like),
            "noise": lambda: fast.fast_normal_noise((T, B, H), 0.1, like),
            "apply": lambda: fast.fast_dropout(prob, 0.4)}[draw]
    registered = fast._ops
    with monkeypatch.context() as m:  # the eager call must not touch the registered ops
        m.setattr(fast, "_ops", lambda: pytest.fail("an eager draw went through the registered op"))
        torch.manual_seed(9)
        eager = call()
    assert fast._ops is registered
    torch.manual_seed(9)
    with _Recording() as mode:
        recorded = call()
    assert torch.equal(eager, recorded)
    assert any(op.startswith("rnnreg.") for op in mode.ops), mode.ops
