"""What the step loop's three cells (steploop_lstm.py, _gru.py, _rnn.py) share: the input
projection before the forward loop; after the backward loop the weight, bias, input and
initial-state gradients, each one GEMM or one reduction over all T steps (the scheme of
csrc/recurrence.h); and the small pieces of their loops (step slices, the masked GEMM inputs of
recurrent dropout, the backward's carried gradients).

Shapes are time-major: x (T, B, I), states (B, H), gate buffers (T, B, G*H).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .refuse_twice import refusal
from .steploop_torch import acc_dtype

TWICE = refusal("rnnreg's step loop")


def at(t: Tensor | None, step: int) -> Tensor | None:
    """One step's slice of a (T, B, H) tensor that may be absent."""
    return None if t is None else t[step]


def bias_sum(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """b_ih + b_hh where both enter the same pre-activation (LSTM, Elman; not the GRU's n gate)."""
    if a is None or b is None:
        return a if b is None else b
    return a + b


def project(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """The input projection of all steps as one GEMM, bias folded in: (T, B, G*H)."""
    T, B, I = x.shape
    x2 = x.reshape(T * B, I)  # (T, B, I) -> (T*B, I)
    out = torch.mm(x2, w_ih.t()) if bias is None else torch.addmm(bias, x2, w_ih.t())
    return out.view(T, B, w_ih.shape[0])  # (T*B, G*H) -> (T, B, G*H)


def first_hin(h0: Tensor, rm: Tensor | None, steps: int) -> Tensor | None:
    """With recurrent dropout, the buffer (T, B, H) of what each step's GEMM reads, h_{t-1} * rm
    (Gal & Ghahramani 2016), row 0 filled; the forward pass fills row t + 1 at step t."""
    if rm is None:
        return None
    hin = h0.new_empty((steps, *h0.shape))
    torch.mul(h0, rm, out=hin[0])
    return hin


def prev_states(h0: Tensor, hs: Tensor, hin: Tensor | None, step: int) -> Tensor:
    """What step t's recurrent GEMM reads: h_{t-1}, masked when rm is on."""
    if hin is not None:
        return hin[step]
    return h0 if step == 0 else hs[step - 1]


def no_autocast(device_type: str):
    """The loops pair GEMM outputs with preallocated buffers of one dtype: autocast must not
    re-type them (the caller already cast everything to the dtype autocast asked for)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def new_carry(h0: Tensor) -> tuple[Tensor, Tensor]:
    """The backward loop's carried direct part of dL/dh (compute dtype) and the recurrent part
    dG_{t+1} W_hh (storage dtype, the GEMM's output), both (B, H) and zero before step T-1."""
    return (torch.zeros(h0.shape, dtype=acc_dtype(h0.dtype), device=h0.device),
            torch.zeros_like(h0))


def initial_grad(dhd: Tensor, dhr: Tensor, rm: Tensor | None, dtype: torch.dtype) -> Tensor:
    """dL/dh_0 once the loop is done: carried part + recurrent part, masked as h_0 entered W_hh."""
    return (dhd + (dhr if rm is None else dhr * rm)).to(dtype)


def w_hh_grad(dgh: Tensor, h0: Tensor, hs: Tensor, hin: Tensor | None) -> Tensor:
    """sum_t dG_t^T h_in_{t-1}: one GEMM over all steps (two without rm: h0, then hs[:-1])."""
    T, B, G = dgh.shape
    H = h0.shape[1]
    if hin is not None:  # (G, T*B) @ (T*B, H)
        return torch.mm(dgh.reshape(T * B, G).t(), hin.reshape(T * B, H))
    dw = torch.mm(dgh[0].t(), h0)  # (G, B) @ (B, H)
    if T > 1:  # steps 1..T-1 read hs[0..T-2]: (G, (T-1)*B) @ ((T-1)*B, H)
        dw.addmm_(dgh[1:].reshape((T - 1) * B, G).t(), hs[:-1].reshape((T - 1) * B, H))
    return dw


def input_grads(dgx: Tensor, x: Tensor, w_ih: Tensor, want_x: bool, want_w: bool
                ) -> tuple[Tensor | None, Tensor | None]:
    """dx = dG_x W_ih (T, B, I) and dW_ih = sum_t dG_x,t^T x_t, each one GEMM."""
    T, B, I = x.shape
    dg2 = dgx.reshape(T * B, dgx.shape[2])  # (T, B, G*H) -> (T*B, G*H)
    dx = torch.mm(dg2, w_ih).view(T, B, I) if want_x else None  # (T*B, I) -> (T, B, I)
    dw = torch.mm(dg2.t(), x.reshape(T * B, I)) if want_w else None  # (G*H, T*B) @ (T*B, I)
    return dx, dw


def bias_grads(dg: Tensor, want_ih: bool, want_hh: bool) -> tuple[Tensor | None, Tensor | None]:
    """The gradient of a bias that sits in the pre-activation: sum over steps and batch. Shared by
    b_ih and b_hh (LSTM, Elman); each gets its own tensor, as a .grad may be updated in place."""
    if not (want_ih or want_hh):
        return None, None
    db = dg.sum((0, 1))
    return (db if want_ih else None), ((db.clone() if want_ih else db) if want_hh else None)
