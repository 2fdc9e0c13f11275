"""Plain-autograd stepwise recurrences: the slow, obviously correct twins of the fast kernel.

Every per-step intervention rnnreg supports is an argument here, so the fast kernel
(``kernels/fast.py``) and the fused ``torch.nn`` path can be checked against one definition:

- ``rec_mask`` (B, H): recurrent dropout on h_{t-1} where it enters W_hh, one mask per sequence
  (Gal & Ghahramani 2016; Keras ``recurrent_dropout``). Already scaled by 1/(1-p).
- ``upd_mask`` (T, B, H): dropout on the candidate update g_t / n_t (Semeniuta et al. 2016, eq. 8).
- ``keep_h``, ``keep_c`` (T, B, H): zoneout weights d_t in [0, 1] (Krueger et al. 2016, eq. 5-6):
  state_t = d_t * state_{t-1} + (1 - d_t) * new_t. Binary in training, the rate itself at eval
  (the expectation), 1 on padded steps of a variable-length batch (the state is frozen there).
- ``peep`` (3H,): diagonal peephole weights for the i, f, o gates (Gers & Schmidhuber 2000; the
  "peephole" variant of Greff et al. 2017): i and f look at c_{t-1}, o looks at c_t.

Shapes are time-major: x (T, B, I), states (B, H). Gate order and weight layout are torch.nn's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _zone(new: Tensor, old: Tensor, keep: Tensor | None, t: int) -> Tensor:
    # Krueger et al. 2016 eq. 5: keep the previous value with weight d_t.
    if keep is None:
        return new
    # Under autocast the new value can be in half precision (an activation of a low-precision
    # product) and the old one float32 (h0): lerp does not promote, so both are taken in the
    # wider dtype, as autocast runs ops with mixed inputs (the state then stays in it).
    dtype = torch.promote_types(new.dtype, old.dtype)
    return torch.lerp(new.to(dtype), old.to(dtype), keep[t].to(dtype))


def lstm_reference(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                   b_ih: Tensor | None, b_hh: Tensor | None, peep: Tensor | None = None,
                   rec_mask: Tensor | None = None, keep_h: Tensor | None = None,
                   keep_c: Tensor | None = None, upd_mask: Tensor | None = None
                   ) -> tuple[Tensor, Tensor]:
    """Returns (h sequence (T, B, H), c sequence (T, B, H)), both after zoneout."""
    xw = F.linear(x, w_ih, b_ih)  # (T, B, 4H): the input projection for all steps at once
    h, c = h0, c0
    hs, cs = [], []
    for t, xw_t in enumerate(xw.unbind(0)):
        h_in = h if rec_mask is None else h * rec_mask
        i, f, g, o = (xw_t + F.linear(h_in, w_hh, b_hh)).chunk(4, 1)  # each (B, H)
        if peep is not None:
            p_i, p_f, p_o = peep.chunk(3)
            i, f = i + p_i * c, f + p_f * c
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        if upd_mask is not None:
            g = g * upd_mask[t]
        c_new = f * c + i * g
        if peep is not None:
            o = o + p_o * c_new
        # Krueger et al. 2016 eq. 6: h is computed from the un-zoned new cell.
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        h, c = _zone(h_new, h, keep_h, t), _zone(c_new, c, keep_c, t)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs), torch.stack(cs)


def gru_reference(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                  b_hh: Tensor | None, rec_mask: Tensor | None = None,
                  keep_h: Tensor | None = None, upd_mask: Tensor | None = None) -> Tensor:
    """Returns the h sequence (T, B, H) after zoneout. torch.nn.GRU's gates (r, z, n)."""
    xw = F.linear(x, w_ih, b_ih)  # (T, B, 3H)
    h = h0
    hs = []
    for t, xw_t in enumerate(xw.unbind(0)):
        h_in = h if rec_mask is None else h * rec_mask
        x_r, x_z, x_n = xw_t.chunk(3, 1)
        h_r, h_z, h_n = F.linear(h_in, w_hh, b_hh).chunk(3, 1)  # each (B, H)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        if upd_mask is not None:
            n = n * upd_mask[t]
        h_new = (1 - z) * n + z * h
        h = _zone(h_new, h, keep_h, t)
        hs.append(h)
    return torch.stack(hs)


def activation(pre: Tensor, nonlinearity: str, threshold: float) -> Tensor:
    """tanh, ReLU, or TRec: the thresholded rectifier x * [x > theta] (Konda et al. 2015,
    used by Krueger & Memisevic 2016)."""
    if nonlinearity == "tanh":
        return torch.tanh(pre)
    if nonlinearity == "relu":
        return torch.relu(pre)
    return pre * (pre > threshold).to(pre.dtype)


def rnn_reference(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                  b_hh: Tensor | None, rec_mask: Tensor | None = None,
                  keep_h: Tensor | None = None, nonlinearity: str = "tanh",
                  threshold: float = 1.0) -> Tensor:
    """Returns the h sequence (T, B, H) after zoneout; h_t = act(W_ih x_t + W_hh h_{t-1} + b)."""
    xw = F.linear(x, w_ih, b_ih)  # (T, B, H)
    h = h0
    hs = []
    for t, xw_t in enumerate(xw.unbind(0)):
        h_in = h if rec_mask is None else h * rec_mask
        h_new = activation(xw_t + F.linear(h_in, w_hh, b_hh), nonlinearity, threshold)
        h = _zone(h_new, h, keep_h, t)
        hs.append(h)
    return torch.stack(hs)
