"""The C++ stepwise kernel as registered PyTorch operators: ``torch.ops.rnnreg.*``.

``torch.library.custom_op`` gives each op a schema, a fake kernel (shapes and dtypes only: what
torch.compile, torch.export and FakeTensor tracing run in place of the kernel, which stays opaque
to them), and the recurrences an autograd formula: the kernel's hand-written backward, itself a
registered op, so AOTAutograd can trace a compiled training step through it. That backward is
not differentiable again; a second backward through it raises (never a silently wrong
second-order gradient). The mask ops take their seed as a tensor, so a compiled or traced graph
draws a fresh seed at each call instead of baking one in.

Argument checking and preparation (dtypes, contiguity, mask broadcasting) is in ``kernels/fast.py``;
every op here trusts its arguments. CPU only: the kernel has no other device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor
from torch.library import custom_op

from .build import native_ops
from .refuse_twice import refusal

Opt = Optional[Tensor]  # custom_op reads the annotations: `Tensor | None` is not accepted here

# Bits of the backward ops' `needs` argument (csrc/recurrence.h, enum Need).
X, H0, C0, WIH, WHH, BIH, BHH, PEEP = 1, 2, 4, 8, 16, 32, 64, 128


def _padded(out: list[Tensor], n: int, like: Tensor) -> tuple[Tensor, ...]:
    """The kernel's list, padded to the op's fixed arity with empty tensors (eval returns fewer)."""
    return tuple(out) + tuple(like.new_empty(0) for _ in range(n - len(out)))


def _maybe(shape: tuple[int, ...], wanted: bool, like: Tensor) -> Tensor:
    """A fake output: ``shape`` when the kernel produces it, else the kernel's empty (0,)."""
    return like.new_empty(shape if wanted else (0,))


TWICE = refusal("rnnreg's C++ stepwise kernel")


def _refuse_second_order(ctx, *grads):
    raise RuntimeError(TWICE)


def _refusing(op) -> None:
    """Register an autograd formula on a backward op that refuses the second backward."""
    op.register_autograd(_refuse_second_order, setup_context=lambda ctx, inputs, output: None)


# The setup and backward functions below serve both routes: the registered ops' autograd formula,
# and the eager route (kernels/fast_eager.py), which passes the native backward kernel as `op`.


def _bits(needs_input_grad: Sequence[bool], bits: tuple[int, ...]) -> int:
    return sum(b for b, n in zip(bits, needs_input_grad) if n and b)


def _pick(t: Tensor, wanted: bool) -> Tensor | None:
    return t if wanted else None


def _bias_pair(db: Tensor, n_ih: bool, n_hh: bool) -> tuple[Tensor | None, Tensor | None]:
    """One summed-bias gradient for b_ih and b_hh: two tensors, so neither .grad aliases the other."""
    return (db if n_ih else None), ((db.clone() if n_ih else db) if n_hh else None)


def _dense(grad: Tensor | None) -> Tensor | None:
    """An incoming gradient as the kernel reads it: contiguous (autograd hands on expanded ones,
    e.g. the gradient of ``out.sum()``)."""
    return None if grad is None else grad.contiguous()


def _default_off(inputs: tuple, index: int) -> bool:
    """A trailing flag that defaults to False (bf16): the registered op hands its defaults to the
    setup, the eager route (fast_eager.py) only what its caller passed."""
    return len(inputs) > index and bool(inputs[index])


def _check_trained(ctx) -> None:
    if not ctx.trained:
        raise RuntimeError("rnnreg stepwise op called with train=False cannot be differentiated")


# ------------------------------------------------------------------------------------------------
# LSTM. Forward outputs: hs, cs (T, B, H); then, when train, what backward reads: the activated
# gates (T, B, 4H), the un-zoned cells (T, B, H, only with keep_c) and h_t * rec_mask (T, B, H,
# only with rec_mask); empty (0,) otherwise. bf16: the matrix products (forward and backward) take
# bf16 operands with float32 accumulation, everything else stays float32 (CPU bf16 autocast, see
# kernels/precision.py); saved for the backward.


@custom_op("rnnreg::lstm_forward", mutates_args=(), device_types="cpu")
def lstm_forward(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Opt, b_hh: Opt,
                 peep: Opt, rec_mask: Opt, keep_h: Opt, keep_c: Opt, upd_mask: Opt, train: bool,
                 bf16: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    out = native_ops().lstm_fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rec_mask, keep_h, keep_c,
                                upd_mask, train, bf16)
    return _padded(out, 5, x)


@lstm_forward.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rec_mask, keep_h, keep_c, upd_mask, train, bf16=False):
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    return (x.new_empty(T, B, H), x.new_empty(T, B, H), _maybe((T, B, 4 * H), train, x),
            _maybe((T, B, H), train and keep_c is not None, x),
            _maybe((T, B, H), train and rec_mask is not None, x))


@custom_op("rnnreg::lstm_backward", mutates_args=(), device_types="cpu")
def lstm_backward(dhs: Opt, dcs: Opt, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                  peep: Opt, rec_mask: Opt, keep_h: Opt, keep_c: Opt, upd_mask: Opt, hs: Tensor,
                  cs: Tensor, gates: Tensor, cn: Tensor, hin: Tensor, needs: int, bf16: bool = False
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return tuple(native_ops().lstm_bwd(dhs, dcs, x, h0, c0, w_ih, w_hh, peep, rec_mask, keep_h, keep_c,
                                       upd_mask, hs, cs, gates, cn, hin, needs, bf16))


@lstm_backward.register_fake
def _(dhs, dcs, x, h0, c0, w_ih, w_hh, peep, rec_mask, keep_h, keep_c, upd_mask, hs, cs, gates, cn,
      hin, needs, bf16=False):
    return (_maybe(tuple(x.shape), needs & X, x), _maybe(tuple(h0.shape), needs & H0, x),
            _maybe(tuple(c0.shape), needs & C0, x), _maybe(tuple(w_ih.shape), needs & WIH, x),
            _maybe(tuple(w_hh.shape), needs & WHH, x), _maybe((w_hh.shape[0],), needs & (BIH | BHH), x),
            _maybe((3 * w_hh.shape[1],), peep is not None and needs & PEEP, x))


def _lstm_setup(ctx, inputs, output) -> None:
    x, h0, c0, w_ih, w_hh, _, _, peep, rec_mask, keep_h, keep_c, upd_mask, train = inputs[:13]
    ctx.mark_non_differentiable(*output[2:])
    ctx.set_materialize_grads(False)
    ctx.trained = train  # the kernel kept what backward reads
    ctx.bf16 = _default_off(inputs, 13)
    ctx.has_peep = peep is not None
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, peep, rec_mask, keep_h, keep_c, upd_mask, *output)


def _lstm_backward(ctx, dhs, dcs, *_, op=None):
    if dhs is None and dcs is None:
        return (None,) * 14
    saved = ctx.saved_tensors
    _check_trained(ctx)
    n = ctx.needs_input_grad
    needs = _bits(n, (X, H0, C0, WIH, WHH, BIH, BHH, PEEP))
    dx, dh0, dc0, dw_ih, dw_hh, db, dpeep = (op or torch.ops.rnnreg.lstm_backward)(
        _dense(dhs), _dense(dcs), *saved, needs, ctx.bf16)
    return (_pick(dx, n[0]), _pick(dh0, n[1]), _pick(dc0, n[2]), _pick(dw_ih, n[3]), _pick(dw_hh, n[4]),
            *_bias_pair(db, n[5], n[6]), _pick(dpeep, n[7] and ctx.has_peep), None, None, None, None, None,
            None)


lstm_forward.register_autograd(_lstm_backward, setup_context=_lstm_setup)
_refusing(lstm_backward)


# ------------------------------------------------------------------------------------------------
# GRU. Forward outputs: hs (T, B, H); when train, the gates (T, B, 3H), the hidden-side n
# pre-activations (T, B, H) and h_t * rec_mask (T, B, H, only with rec_mask). bf16: as the LSTM's.


@custom_op("rnnreg::gru_forward", mutates_args=(), device_types="cpu")
def gru_forward(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Opt, b_hh: Opt, rec_mask: Opt,
                keep_h: Opt, upd_mask: Opt, train: bool, bf16: bool = False
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    out = native_ops().gru_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, upd_mask, train,
                               bf16)
    return _padded(out, 4, x)


@gru_forward.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, upd_mask, train, bf16=False):
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    return (x.new_empty(T, B, H), _maybe((T, B, 3 * H), train, x), _maybe((T, B, H), train, x),
            _maybe((T, B, H), train and rec_mask is not None, x))


@custom_op("rnnreg::gru_backward", mutates_args=(), device_types="cpu")
def gru_backward(dhs: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, rec_mask: Opt,
                 keep_h: Opt, upd_mask: Opt, hs: Tensor, gates: Tensor, hn: Tensor, hin: Tensor,
                 needs: int, bf16: bool = False
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return tuple(native_ops().gru_bwd(dhs, x, h0, w_ih, w_hh, rec_mask, keep_h, upd_mask, hs, gates, hn,
                                      hin, needs, bf16))


@gru_backward.register_fake
def _(dhs, x, h0, w_ih, w_hh, rec_mask, keep_h, upd_mask, hs, gates, hn, hin, needs, bf16=False):
    G = w_hh.shape[0]
    return (_maybe(tuple(x.shape), needs & X, x), _maybe(tuple(h0.shape), needs & H0, x),
            _maybe(tuple(w_ih.shape), needs & WIH, x), _maybe(tuple(w_hh.shape), needs & WHH, x),
            _maybe((G,), needs & BIH, x), _maybe((G,), needs & BHH, x))


def _gru_setup(ctx, inputs, output) -> None:
    x, h0, w_ih, w_hh, _, _, rec_mask, keep_h, upd_mask, train = inputs[:10]
    ctx.mark_non_differentiable(*output[1:])
    ctx.set_materialize_grads(False)
    ctx.trained = train
    ctx.bf16 = _default_off(inputs, 10)
    ctx.save_for_backward(x, h0, w_ih, w_hh, rec_mask, keep_h, upd_mask, *output)


def _gru_backward(ctx, dhs, *_, op=None):
    if dhs is None:
        return (None,) * 11
    saved = ctx.saved_tensors
    _check_trained(ctx)
    n = ctx.needs_input_grad
    needs = _bits(n, (X, H0, WIH, WHH, BIH, BHH))
    grads = (op or torch.ops.rnnreg.gru_backward)(_dense(dhs), *saved, needs, ctx.bf16)
    return (*(_pick(g, wanted) for g, wanted in zip(grads, n)), None, None, None, None, None)


gru_forward.register_autograd(_gru_backward, setup_context=_gru_setup)
_refusing(gru_backward)


# ------------------------------------------------------------------------------------------------
# Elman RNN (act: 0 tanh, 1 relu, 2 TRec). Forward outputs: hs (T, B, H); when train, the
# activation's derivative at each step (T, B, H) and h_t * rec_mask (T, B, H, only with rec_mask).
# bf16: as the LSTM's.


@custom_op("rnnreg::rnn_forward", mutates_args=(), device_types="cpu")
def rnn_forward(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Opt, b_hh: Opt, rec_mask: Opt,
                keep_h: Opt, act: int, threshold: float, train: bool, bf16: bool = False
                ) -> tuple[Tensor, Tensor, Tensor]:
    out = native_ops().rnn_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, act, threshold, train,
                               bf16)
    return _padded(out, 3, x)


@rnn_forward.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, act, threshold, train, bf16=False):
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    return (x.new_empty(T, B, H), _maybe((T, B, H), train, x),
            _maybe((T, B, H), train and rec_mask is not None, x))


@custom_op("rnnreg::rnn_backward", mutates_args=(), device_types="cpu")
def rnn_backward(dhs: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, rec_mask: Opt,
                 keep_h: Opt, hs: Tensor, deriv: Tensor, hin: Tensor, needs: int, bf16: bool = False
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    out = native_ops().rnn_bwd(dhs, x, h0, w_ih, w_hh, rec_mask, keep_h, hs, deriv, hin, needs, bf16)
    return tuple(out[:5])  # the kernel's sixth slot is always empty


@rnn_backward.register_fake
def _(dhs, x, h0, w_ih, w_hh, rec_mask, keep_h, hs, deriv, hin, needs, bf16=False):
    return (_maybe(tuple(x.shape), needs & X, x), _maybe(tuple(h0.shape), needs & H0, x),
            _maybe(tuple(w_ih.shape), needs & WIH, x), _maybe(tuple(w_hh.shape), needs & WHH, x),
            _maybe((w_hh.shape[0],), needs & (BIH | BHH), x))


def _rnn_setup(ctx, inputs, output) -> None:
    x, h0, w_ih, w_hh, _, _, rec_mask, keep_h, _, _, train = inputs[:11]
    ctx.mark_non_differentiable(*output[1:])
    ctx.set_materialize_grads(False)
    ctx.trained = train
    ctx.bf16 = _default_off(inputs, 11)
    ctx.save_for_backward(x, h0, w_ih, w_hh, rec_mask, keep_h, *output)


def _rnn_backward(ctx, dhs, *_, op=None):
    if dhs is None:
        return (None,) * 12
    saved = ctx.saved_tensors
    _check_trained(ctx)
    n = ctx.needs_input_grad
    needs = _bits(n, (X, H0, WIH, WHH, BIH, BHH))
    backward = op or torch.ops.rnnreg.rnn_backward
    dx, dh0, dw_ih, dw_hh, db = backward(_dense(dhs), *saved, needs, ctx.bf16)[:5]
    return (_pick(dx, n[0]), _pick(dh0, n[1]), _pick(dw_ih, n[2]), _pick(dw_hh, n[3]),
            *_bias_pair(db, n[4], n[5]), None, None, None, None, None, None)


rnn_forward.register_autograd(_rnn_backward, setup_context=_rnn_setup)
_refusing(rnn_backward)


# ------------------------------------------------------------------------------------------------
# Masks (csrc/masks.cpp) and Gaussian noise (csrc/noise.cpp): a pure function of a 64-bit seed (a
# one-element int64 tensor) and the element's index, so the same seed gives the same values under
# any thread count.


def _shaped_like(seed: Tensor, like: Tensor, value: float) -> Tensor:
    """The fake kernel of the draws shaped and typed like ``like``: its metadata, no values."""
    return torch.empty(like.shape, dtype=like.dtype, device=like.device)


@custom_op("rnnreg::dropout_mask", mutates_args=(), device_types="cpu")
def dropout_mask(seed: Tensor, like: Tensor, p: float) -> Tensor:
    """Shaped and typed like ``like`` (only its metadata is read: an expanded scalar will do)."""
    return native_ops().dropout_mask(list(like.shape), p, int(seed.item()), like.dtype)


@custom_op("rnnreg::keep_mask", mutates_args=(), device_types="cpu")
def keep_mask(prob: Tensor, seed: Tensor) -> Tensor:
    return native_ops().keep_mask(prob, int(seed.item()))


@keep_mask.register_fake
def _(prob, seed):
    return torch.empty_like(prob, memory_format=torch.contiguous_format)


@custom_op("rnnreg::keep_mask_const", mutates_args=(), device_types="cpu")
def keep_mask_const(seed: Tensor, like: Tensor, prob: float) -> Tensor:
    """As dropout_mask: ``like`` gives the shape and dtype only."""
    return native_ops().keep_mask_const(list(like.shape), prob, int(seed.item()), like.dtype)


@custom_op("rnnreg::normal_noise", mutates_args=(), device_types="cpu")
def normal_noise(seed: Tensor, like: Tensor, std: float) -> Tensor:
    """std * N(0, 1) (csrc/noise.cpp), shaped and typed like ``like`` (only its metadata is read)."""
    return native_ops().normal_noise(list(like.shape), std, int(seed.item()), like.dtype)


for _op in (dropout_mask, keep_mask_const, normal_noise):
    _op.register_fake(_shaped_like)


@custom_op("rnnreg::dropout_apply", mutates_args=(), device_types="cpu")
def dropout_apply(x: Tensor, seed: Tensor, p: float) -> Tensor:
    """``x * dropout_mask(seed, x, p)`` without the mask (csrc/masks.cpp). Linear in x with the
    same mask, so its gradient is itself applied to the incoming gradient: exact to any order."""
    return native_ops().dropout_apply(x, p, int(seed.item()))


@dropout_apply.register_fake
def _(x, seed, p):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _dropout_apply_setup(ctx, inputs, output):
    ctx.seed, ctx.p = inputs[1], inputs[2]


def _dropout_apply_backward(ctx, grad):
    return dropout_apply(grad, ctx.seed, ctx.p), None, None


dropout_apply.register_autograd(_dropout_apply_backward, setup_context=_dropout_apply_setup)


# Under CPU autocast the kernel's own matrix products would return bf16 / fp16 into float32
# buffers; registered here, autocast hands each recurrence op float32 arguments and runs it with
# autocast off (kernels/precision.py then casts the outputs to autocast's dtype for the layers).
for _op in (lstm_forward, lstm_backward, gru_forward, gru_backward, rnn_forward, rnn_backward):
    torch.library.register_autocast(_op, "cpu", torch.float32)
