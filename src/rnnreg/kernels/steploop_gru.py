"""The step loop's GRU (torch.nn gate order r z n): time loops and hand-written backward.

torch.nn.GRU keeps the hidden side of the candidate inside the reset gate, n = tanh(x_n + r *
(W_hn h + b_hn)), so the per-step GEMM writes the hidden side into a buffer of its own (b_hh folded
in) instead of adding into the input projection; the pointwise pass (``pw.gru_fwd``) sums them.
Backward: per step in reverse one pointwise pass (``pw.gru_bwd``, which splits the x-side and
hidden-side gate gradients) and one GEMM for the recurrent part of dL/dh_{t-1}; then the weight,
bias and input gradients as single GEMMs / reductions over all steps.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .refuse_twice import backward_once
from .steploop_common import (TWICE, at, first_hin, initial_grad, input_grads, new_carry,
                              no_autocast, prev_states, project, w_hh_grad)
from .steploop_graphs import run_loop


def _fwd_loop(pw, train, xg, h0, w_hh, b_hh, rm, kh, u, hg, hs, hn, hin) -> None:
    w_t = w_hh.t()  # (H, 3H)
    steps = xg.shape[0]
    for t in range(steps):
        h_in = prev_states(h0, hs, hin, t)
        if b_hh is None:
            torch.mm(h_in, w_t, out=hg)
        else:
            torch.addmm(b_hh, h_in, w_t, out=hg)  # (B, 3H): W_hh h_in + b_hh
        pw.gru_fwd(xg[t], hg, h0 if t == 0 else hs[t - 1], at(u, t), at(kh, t), rm, hs[t],
                   at(hn, t), at(hin, t + 1) if t + 1 < steps else None, train)


def gru_forward(pw, x, h0, w_ih, w_hh, b_ih, b_hh, rm, kh, u, train: bool):
    """Returns hs (T, B, H) and, for the backward, r z n (T, B, 3H), the hidden-side candidate
    term W_hn h_in + b_hn (T, B, H) and the masked GEMM inputs hin (with rm)."""
    T, B = x.shape[:2]
    H = h0.shape[1]
    xg = project(x, w_ih, b_ih)  # (T, B, 3H)
    hs = x.new_empty((T, B, H))
    hn = x.new_empty((T, B, H)) if train else None
    hin = first_hin(h0, rm, T)
    hg = x.new_empty((B, 3 * H))  # one step's hidden side, rewritten every step
    run_loop(("gru", pw.__name__, train), functools.partial(_fwd_loop, pw, train),
             (xg, h0, w_hh, b_hh, rm, kh, u, hg, hs, hn, hin), written=(0, 8, 9, 10))
    return hs, xg, hn, hin


class GRUStepLoop(torch.autograd.Function):
    """apply(pw, x, h0, w_ih, w_hh, b_ih, b_hh, rm, kh, u) -> hs (see steploop.py)."""

    @staticmethod
    def forward(ctx, pw, x, h0, w_ih, w_hh, b_ih, b_hh, rm, kh, u):
        hs, gates, hn, hin = gru_forward(pw, x, h0, w_ih, w_hh, b_ih, b_hh, rm, kh, u, train=True)
        ctx.set_materialize_grads(False)
        ctx.pw = pw
        ctx.save_for_backward(x, h0, w_ih, w_hh, rm, kh, u, hs, gates, hn, hin)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        return backward_once(_grads, ctx, dhs, message=TWICE)  # hand-written: a second backward raises


def _grads(ctx, dhs: Tensor | None) -> tuple:
    """GRUStepLoop's gradients, one per argument of apply (None for pw and the masks)."""
    if dhs is None:
        return (None,) * 10
    x, h0, w_ih, w_hh, rm, kh, u, hs, gates, hn, hin = ctx.saved_tensors
    n = ctx.needs_input_grad  # n[0] is pw
    dhs = dhs.contiguous()
    dgx, dgh = torch.empty_like(gates), torch.empty_like(gates)  # (T, B, 3H) each
    dhd, dhr = new_carry(h0)
    with no_autocast(x.device.type):
        for t in range(x.shape[0] - 1, -1, -1):
            ctx.pw.gru_bwd(gates[t], hn[t], h0 if t == 0 else hs[t - 1], at(u, t), at(kh, t),
                           dhs[t], dhr, rm, dhd, dgx[t], dgh[t])
            if t > 0 or n[2]:
                torch.mm(dgh[t], w_hh, out=dhr)  # (B, 3H) @ (3H, H)
        dx, dw_ih = input_grads(dgx, x, w_ih, n[1], n[3])
        return (None, dx, initial_grad(dhd, dhr, rm, x.dtype) if n[2] else None, dw_ih,
                w_hh_grad(dgh, h0, hs, hin) if n[4] else None,
                dgx.sum((0, 1)) if n[5] else None, dgh.sum((0, 1)) if n[6] else None,
                None, None, None)
