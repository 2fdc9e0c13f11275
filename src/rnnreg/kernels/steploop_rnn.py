"""The step loop's Elman RNN (tanh, ReLU or TRec): time loops and hand-written backward.

Forward: the input projection (biases folded in) as one GEMM, then per step one GEMM adding
h_in @ W_hh^T into the step's pre-activations and one pointwise pass (``pw.rnn_fwd``: activation,
zoneout, and the activation's derivative kept for the backward in place of the pre-activation).
Backward: per step in reverse one pointwise pass (``pw.rnn_bwd``) and one GEMM; then the weight,
bias and input gradients as single GEMMs / reductions over all steps.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .refuse_twice import backward_once
from .steploop_common import (TWICE, at, bias_grads, bias_sum, first_hin, initial_grad,
                              input_grads, new_carry, no_autocast, prev_states, project, w_hh_grad)
from .steploop_graphs import run_loop


def _fwd_loop(pw, train, act, threshold, pre, h0, w_hh, rm, kh, hs, hin) -> None:
    w_t = w_hh.t()  # (H, H)
    steps = pre.shape[0]
    for t in range(steps):
        pre[t].addmm_(prev_states(h0, hs, hin, t), w_t)
        pw.rnn_fwd(pre[t], h0 if t == 0 else hs[t - 1], at(kh, t), rm, hs[t],
                   at(hin, t + 1) if t + 1 < steps else None, train, act, threshold)


def rnn_forward(pw, x, h0, w_ih, w_hh, b_ih, b_hh, rm, kh, act: str, threshold: float,
                train: bool):
    """Returns hs (T, B, H) and, for the backward, the activation's derivative (T, B, H) and the
    masked GEMM inputs hin (with rm)."""
    T, B = x.shape[:2]
    pre = project(x, w_ih, bias_sum(b_ih, b_hh))  # (T, B, H)
    hs = x.new_empty((T, B, h0.shape[1]))
    hin = first_hin(h0, rm, T)
    run_loop(("rnn", pw.__name__, train, act, threshold),
             functools.partial(_fwd_loop, pw, train, act, threshold),
             (pre, h0, w_hh, rm, kh, hs, hin), written=(0, 5, 6))
    return hs, pre, hin


class RNNStepLoop(torch.autograd.Function):
    """apply(pw, x, h0, w_ih, w_hh, b_ih, b_hh, rm, kh, act, threshold) -> hs (see steploop.py)."""

    @staticmethod
    def forward(ctx, pw, x, h0, w_ih, w_hh, b_ih, b_hh, rm, kh, act, threshold):
        hs, deriv, hin = rnn_forward(pw, x, h0, w_ih, w_hh, b_ih, b_hh, rm, kh, act, threshold,
                                     train=True)
        ctx.set_materialize_grads(False)
        ctx.pw = pw
        ctx.save_for_backward(x, h0, w_ih, w_hh, rm, kh, hs, deriv, hin)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        return backward_once(_grads, ctx, dhs, message=TWICE)  # hand-written: a second backward raises


def _grads(ctx, dhs: Tensor | None) -> tuple:
    """RNNStepLoop's gradients, one per argument of apply (None for pw, masks and settings)."""
    if dhs is None:
        return (None,) * 11
    x, h0, w_ih, w_hh, rm, kh, hs, deriv, hin = ctx.saved_tensors
    n = ctx.needs_input_grad  # n[0] is pw
    dhs = dhs.contiguous()
    dg = torch.empty_like(deriv)  # (T, B, H)
    dhd, dhr = new_carry(h0)
    with no_autocast(x.device.type):
        for t in range(x.shape[0] - 1, -1, -1):
            ctx.pw.rnn_bwd(deriv[t], at(kh, t), dhs[t], dhr, rm, dhd, dg[t])
            if t > 0 or n[2]:
                torch.mm(dg[t], w_hh, out=dhr)  # (B, H) @ (H, H)
        dx, dw_ih = input_grads(dg, x, w_ih, n[1], n[3])
        db_ih, db_hh = bias_grads(dg, n[5], n[6])
        return (None, dx, initial_grad(dhd, dhr, rm, x.dtype) if n[2] else None, dw_ih,
                w_hh_grad(dg, h0, hs, hin) if n[4] else None, db_ih, db_hh,
                None, None, None, None)
