"""The stepwise path: one recurrent layer run step by step, for what needs a per-step hand.

Zoneout, recurrent dropout, peepholes, the TRec nonlinearity and cell-state sequences cannot be
expressed through the fused kernels. Here we draw every mask for the whole sequence up front
(so the fast kernel and the reference twin see identical randomness), then hand one direction at
a time to the kernel picked by ``kernels.pick_kernel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..kernels import pick_kernel
from ..regularizers.masks import bernoulli_keep, dropout_mask, keep_mask
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


def _keep(rate: float, signal: Tensor | None, shape: tuple[int, int, int], valid: Tensor | None,
          like: Tensor, stochastic: bool) -> Tensor | None:
    """Zoneout weights d_t (T, B, H) (Krueger et al. 2016): Bernoulli(rate) in training, the rate
    itself at eval (the expectation), an outside per-step probability ``signal`` when given
    (surprisal-driven zoneout, Rocki 2016), and exactly 1 on padded steps so the state is frozen."""
    if signal is not None:
        prob = signal.to(like.dtype).expand(shape)
        keep = bernoulli_keep(prob) if stochastic else prob
    elif rate > 0.0:
        keep = keep_mask(shape, rate, like) if stochastic else like.new_full(shape, rate)
    elif valid is None:
        return None
    else:
        keep = like.new_zeros(shape)
    if valid is not None:
        keep = torch.where(valid[:, :, None], keep, torch.ones_like(keep))
    return keep


def stepwise_layer(opts: StepOptions, x: Tensor, lengths: Tensor | None, valid: Tensor | None,
                   h0: Tensor, c0: Tensor | None, weights: list[tuple[Tensor | None, ...]],
                   keep_signal: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Run one layer, each direction in turn.

    x (T, B, I); h0, c0 (D, B, H); weights: per direction (w_ih, w_hh, b_ih, b_hh, peep);
    keep_signal broadcastable to (T, B, H). Returns output (T, B, D*H) zero on padded steps,
    h_n and c_n (D, B, H), and the cell sequence (T, B, D*H) for an LSTM (None otherwise).
    """
    kernel = pick_kernel(opts.cell, x, opts.reference_only)
    steps, batch = x.shape[:2]
    hidden = h0.shape[-1]
    shape = (steps, batch, hidden)
    drop_rec = opts.stochastic and opts.recurrent_dropout > 0.0
    outs, cells, h_n, c_n = [], [], [], []
    for d, (w_ih, w_hh, b_ih, b_hh, peep) in enumerate(weights):
        keep_h = _keep(opts.zoneout_h, keep_signal, shape, valid, x, opts.stochastic)
        keep_c = (_keep(opts.zoneout_c, keep_signal, shape, valid, x, opts.stochastic)
                  if opts.cell == "lstm" else None)
        rec_mask = upd_mask = None
        if drop_rec and opts.semeniuta:
            upd_mask = dropout_mask(shape, opts.recurrent_dropout, x)  # fresh mask every step
        elif drop_rec:
            rec_mask = dropout_mask((batch, hidden), opts.recurrent_dropout, x)  # one per sequence
        xd = x
        if d == 1:  # the reverse direction reads each sequence backwards within its length
            xd, keep_h, keep_c = (None if t is None else reverse_time(t, lengths) for t in (x, keep_h, keep_c))
            upd_mask = None if upd_mask is None else reverse_time(upd_mask, lengths)
        if opts.cell == "lstm":
            h_seq, c_seq = kernel(xd, h0[d], c0[d], w_ih, w_hh, b_ih, b_hh, peep, rec_mask, keep_h, keep_c, upd_mask)
        elif opts.cell == "gru":
            h_seq, c_seq = kernel(xd, h0[d], w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, upd_mask), None
        else:
            h_seq, c_seq = kernel(xd, h0[d], w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h,
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
