"""The stepwise path: one recurrent layer run step by step, for what needs a per-step hand.

Zoneout, recurrent dropout, peepholes, the TRec nonlinearity and cell-state sequences cannot be
expressed through the fused kernels. Here we draw every mask for the whole sequence up front
(:func:`rnnreg.regularizers.step_noise.draw_step_noise`, so the fast kernel and the reference
twin see identical randomness), then hand one direction at a time to the kernel picked by
``kernels.pick_kernel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..kernels import pick_kernel
from ..regularizers.step_noise import draw_step_noise
from .sequences import reverse_time


@dataclass(frozen=True)
class StepOptions:
    """Per-step interventions for one forward call (already resolved for train / eval)."""
    cell: str  # "lstm" | "gru" | "rnn"
    stochastic: bool  # draw masks (training or MC dropout) instead of using expectations
    recurrent_dropout: float = 0.0
    semeniuta: bool = False  # drop the candidate update (Semeniuta et al. 2016) instead of h_{t-1}
    zoneout_h: float = 0.0
    zoneout_c: float = 0.0
    nonlinearity: str = "tanh"
    threshold: float = 1.0
    reference_only: bool = False


def stepwise_layer(opts: StepOptions, x: Tensor, lengths: Tensor | None, valid: Tensor | None,
                   h0: Tensor, c0: Tensor | None, weights: list[tuple[Tensor | None, ...]],
                   keep_signal: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Run one layer, each direction in turn.

    x (T, B, I); h0, c0 (D, B, H); weights: per direction (w_ih, w_hh, b_ih, b_hh, peep);
    keep_signal broadcastable to (T, B, H). Returns output (T, B, D*H) zero on padded steps,
    h_n and c_n (D, B, H), and the cell sequence (T, B, D*H) for an LSTM (None otherwise).
    """
    # Under CPU autocast a layer below may hand on bf16 / fp16: the C++ kernel still serves it
    # (it computes in float32 there, its matrix products in bf16 on native-bf16 CPUs,
    # kernels/precision.py).
    autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
    like = x.new_empty(0, dtype=torch.float32) if autocast and x.dtype != torch.float64 else x
    kernel = pick_kernel(opts.cell, like, opts.reference_only)
    steps, batch = x.shape[:2]
    hidden = h0.shape[-1]
    shape = (steps, batch, hidden)
    outs, cells, h_n, c_n = [], [], [], []
    for d, (w_ih, w_hh, b_ih, b_hh, peep) in enumerate(weights):
        # Drawn per direction in forward time (the keep signal and valid are), reversed below.
        noise = draw_step_noise(shape, x, stochastic=opts.stochastic, recurrent_dropout=opts.recurrent_dropout,
                                semeniuta=opts.semeniuta, zoneout_h=opts.zoneout_h,
                                zoneout_c=opts.zoneout_c if opts.cell == "lstm" else None,
                                keep_signal=keep_signal, valid=valid)
        xd = x
        if d == 1:  # the reverse direction reads each sequence backwards within its length
            xd = reverse_time(x, lengths)
            noise = noise.map_steps(lambda t: reverse_time(t, lengths))
        if opts.cell == "lstm":
            h_seq, c_seq = kernel(xd, h0[d], c0[d], w_ih, w_hh, b_ih, b_hh, peep, noise.rec, noise.keep_h,
                                  noise.keep_c, noise.update)
        elif opts.cell == "gru":
            h_seq, c_seq = kernel(xd, h0[d], w_ih, w_hh, b_ih, b_hh, noise.rec, noise.keep_h, noise.update), None
        else:
            h_seq, c_seq = kernel(xd, h0[d], w_ih, w_hh, b_ih, b_hh, noise.rec, noise.keep_h,
                                  opts.nonlinearity, opts.threshold), None
        # Padded steps are frozen (keep = 1), so the last row holds each sequence's final state.
        h_n.append(h_seq[-1])
        if c_seq is not None:
            c_n.append(c_seq[-1])
        if d == 1:
            h_seq = reverse_time(h_seq, lengths)
            c_seq = None if c_seq is None else reverse_time(c_seq, lengths)
        outs.append(h_seq)
        cells.append(c_seq)
    out = torch.cat(outs, -1) if len(outs) > 1 else outs[0]  # (T, B, D*H)
    cell_seq = torch.cat(cells, -1) if cells[0] is not None else None
    if valid is not None:
        pad = valid[:, :, None].to(out.dtype)  # (T, B, 1): zero the padded steps like torch.nn
        out = out * pad
        cell_seq = None if cell_seq is None else cell_seq * pad
    return out, torch.stack(h_n), torch.stack(c_n) if c_n else None, cell_seq
