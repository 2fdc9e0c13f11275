"""The step loop's LSTM (torch.nn gate order i f g o): time loops and hand-written backward.

Forward: the input projection of all steps as one GEMM (biases folded in), then per step one GEMM
adding h_in @ W_hh^T into the step's pre-activations and one fused pointwise pass (``pw.lstm_fwd``:
gates, peepholes, update mask, zoneout, and what the backward needs). Backward: per step in reverse
one pointwise pass (``pw.lstm_bwd``) and one GEMM for the recurrent part of dL/dh_{t-1}; then the
weight, bias, peephole and input gradients as single GEMMs / reductions over all steps.
``pw`` is ``steploop_torch`` or ``pointwise_triton``: same functions, same arguments.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .refuse_twice import backward_once
from .steploop_common import (TWICE, at, bias_grads, bias_sum, first_hin, initial_grad,
                              input_grads, new_carry, no_autocast, prev_states, project, w_hh_grad)
from .steploop_graphs import run_loop
from .steploop_torch import acc


def _fwd_loop(pw, train, gates, h0, c0, w_hh, peep, rm, kh, kc, u, hs, cs, cn, hin) -> None:
    w_t = w_hh.t()  # (H, 4H)
    steps = gates.shape[0]
    for t in range(steps):
        pre = gates[t]  # (B, 4H)
        pre.addmm_(prev_states(h0, hs, hin, t), w_t)
        hp, cp = (h0, c0) if t == 0 else (hs[t - 1], cs[t - 1])
        pw.lstm_fwd(pre, hp, cp, peep, at(u, t), at(kh, t), at(kc, t), rm, hs[t], cs[t], at(cn, t),
                    at(hin, t + 1) if t + 1 < steps else None, train)


def lstm_forward(pw, x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rm, kh, kc, u, train: bool):
    """Returns hs, cs (T, B, H) and, for the backward, the activated gates (T, B, 4H), the un-zoned
    cells cn (T, B, H; only when training with keep_c) and the masked GEMM inputs hin (with rm)."""
    T, B = x.shape[:2]
    H = h0.shape[1]
    gates = project(x, w_ih, bias_sum(b_ih, b_hh))  # (T, B, 4H)
    hs, cs = x.new_empty((T, B, H)), x.new_empty((T, B, H))
    cn = x.new_empty((T, B, H)) if train and kc is not None else None
    hin = first_hin(h0, rm, T)
    run_loop(("lstm", pw.__name__, train), functools.partial(_fwd_loop, pw, train),
             (gates, h0, c0, w_hh, peep, rm, kh, kc, u, hs, cs, cn, hin),
             written=(0, 9, 10, 11, 12))
    return hs, cs, gates, cn, hin


def _bwd_loop(pw, gates, c0, cs, cn, w_hh, peep, rm, kh, kc, u, dhs, dcs, dg, need_h0):
    dhd, dhr = new_carry(c0)
    dc = torch.zeros_like(dhd)
    for t in range(gates.shape[0] - 1, -1, -1):
        pw.lstm_bwd(gates[t], c0 if t == 0 else cs[t - 1], cn[t], peep, at(u, t), at(kh, t),
                    at(kc, t), at(dhs, t), at(dcs, t), dhr, rm, dhd, dc, dg[t])
        if t > 0 or need_h0:
            torch.mm(dg[t], w_hh, out=dhr)  # (B, 4H) @ (4H, H): recurrent part of dL/dh_{t-1}
    return dhd, dhr, dc


def _peep_grad(dg: Tensor, c0: Tensor, cs: Tensor, cn: Tensor) -> Tensor:
    """d peep = sum over steps and batch of (d_i c_{t-1}, d_f c_{t-1}, d_o c_t), in one pass."""
    c_old = acc(torch.cat((c0[None], cs[:-1])))  # (T, B, H): c_{t-1}
    d_i, d_f, _, d_o = acc(dg).chunk(4, 2)  # each (T, B, H)
    return torch.cat(((d_i * c_old).sum((0, 1)), (d_f * c_old).sum((0, 1)),
                      (d_o * acc(cn)).sum((0, 1)))).to(dg.dtype)


class LSTMStepLoop(torch.autograd.Function):
    """apply(pw, x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rm, kh, kc, u) -> (hs, cs); all in one
    storage dtype, masks dense in the compute dtype (see steploop.py)."""

    @staticmethod
    def forward(ctx, pw, x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rm, kh, kc, u):
        hs, cs, gates, cn, hin = lstm_forward(pw, x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rm, kh,
                                              kc, u, train=True)
        ctx.set_materialize_grads(False)
        ctx.pw = pw
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, peep, rm, kh, kc, u, hs, cs, gates, cn, hin)
        return hs, cs

    @staticmethod
    def backward(ctx, dhs, dcs):
        return backward_once(_grads, ctx, dhs, dcs, message=TWICE)  # hand-written: a second backward raises


def _grads(ctx, dhs: Tensor | None, dcs: Tensor | None) -> tuple:
    """LSTMStepLoop's gradients, one per argument of apply (None for pw and the masks)."""
    if dhs is None and dcs is None:
        return (None,) * 13
    x, h0, c0, w_ih, w_hh, peep, rm, kh, kc, u, hs, cs, gates, cn, hin = ctx.saved_tensors
    n = ctx.needs_input_grad  # n[0] is pw
    cn = cs if cn is None else cn  # without zoneout of c the stored cell is the un-zoned one
    dg = torch.empty_like(gates)  # (T, B, 4H) pre-activation gradients
    with no_autocast(x.device.type):
        dhd, dhr, dc = _bwd_loop(ctx.pw, gates, c0, cs, cn, w_hh, peep, rm, kh, kc, u,
                                 None if dhs is None else dhs.contiguous(),
                                 None if dcs is None else dcs.contiguous(), dg, n[2])
        dx, dw_ih = input_grads(dg, x, w_ih, n[1], n[4])
        db_ih, db_hh = bias_grads(dg, n[6], n[7])
        return (None, dx, initial_grad(dhd, dhr, rm, x.dtype) if n[2] else None,
                dc.to(x.dtype) if n[3] else None, dw_ih,
                w_hh_grad(dg, h0, hs, hin) if n[5] else None, db_ih, db_hh,
                _peep_grad(dg, c0, cs, cn) if n[8] and peep is not None else None,
                None, None, None, None)
