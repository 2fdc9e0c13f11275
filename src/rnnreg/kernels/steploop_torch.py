"""The step loop's pointwise passes (``kernels/steploop.py``) in plain torch ops.

The CPU-testable twin of ``pointwise_triton.py`` and the fallback on devices without Triton: the
same functions with the same arguments, each a handful of element-wise torch ops (several kernel
launches per step on a GPU, where a Triton kernel is one). Per step, in the time loop:

- ``*_fwd`` reads the step's pre-activations (the input projection, the biases and the recurrent
  GEMM already summed), applies the gates, peepholes, update mask and zoneout, writes h_t (and c_t)
  and, when ``hin`` is given, h_t * rec_mask for the next step's GEMM; when training it overwrites
  the pre-activations with what the backward needs (the activated gates, or the RNN's derivative).
- ``*_bwd`` turns dL/dh_t (upstream + carried + the recurrent GEMM's dG_{t+1} W_hh, masked) into
  the gate gradients dG_t and the carried direct parts of dL/dh_{t-1}, dL/dc_{t-1}.

The equations are reference.py's (Krueger et al. 2016 eq. 5-6 for zoneout, Semeniuta et al. 2016
eq. 8 for the update mask, Gers & Schmidhuber 2000 for peepholes); the backward ones are the chain
rule through them, term for term those of csrc/lstm.cpp, gru.cpp, rnn.cpp. Masks (u, kh, kc, rm)
and the carried gradients (dhd, dc) are in the compute dtype (float32 for half storage); states,
gates and GEMM operands in the storage dtype. All per-step tensors are (B, H) or (B, G*H).
"""

from __future__ import annotations

import torch
from torch import Tensor

HALF = (torch.float16, torch.bfloat16)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The pointwise math's dtype: float32 for half-precision storage, else the storage dtype."""
    return torch.float32 if dtype in HALF else dtype


def acc(t: Tensor) -> Tensor:
    return t.to(acc_dtype(t.dtype))


def _zone(new: Tensor, old: Tensor, keep: Tensor | None) -> Tensor:
    # Krueger et al. 2016 eq. 5: keep the previous value with weight d_t.
    return new if keep is None else torch.lerp(new, old, keep)


def _store(dst: Tensor, *parts: Tensor) -> None:
    """Write the parts side by side into dst (B, len(parts) * H)."""
    for d, p in zip(dst.chunk(len(parts), 1), parts):
        d.copy_(p)


def _dh(dhd: Tensor, dhr: Tensor, rm: Tensor | None, dhu: Tensor | None) -> Tensor:
    """dL/dh_t: carried direct part + recurrent part (it reached h_t through h_t * rec_mask) +
    upstream."""
    dh = dhd + (acc(dhr) if rm is None else acc(dhr) * rm)
    return dh if dhu is None else dh + dhu


def _carry_h(dhd: Tensor, dh: Tensor, kh: Tensor | None) -> None:
    """The part of dL/dh_t that reaches h_{t-1} directly, through zoneout's kept share."""
    if kh is None:
        dhd.zero_()
    else:
        torch.mul(kh, dh, out=dhd)


def lstm_fwd(pre, hp, cp, peep, u, kh, kc, rm, h, c, cn, hin, train: bool) -> None:
    """pre (B, 4H) i f g o; hp, cp: h_{t-1}, c_{t-1}; writes h, c, and cn (the un-zoned cell)."""
    i, f, g, o = acc(pre).chunk(4, 1)  # each (B, H)
    c_old = acc(cp)
    if peep is not None:  # i and f look at c_{t-1}, o at c_t (Gers & Schmidhuber 2000)
        p_i, p_f, p_o = acc(peep).chunk(3)
        i, f = i + p_i * c_old, f + p_f * c_old
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
    c_new = f * c_old + i * (g if u is None else g * u)
    o = torch.sigmoid(o if peep is None else o + p_o * c_new)
    h.copy_(_zone(o * torch.tanh(c_new), acc(hp), kh))  # from the un-zoned cell (Krueger eq. 6)
    c.copy_(_zone(c_new, c_old, kc))
    if cn is not None:
        cn.copy_(c_new)
    if hin is not None:
        torch.mul(h, rm, out=hin)
    if train:
        _store(pre, i, f, g, o)


def lstm_bwd(gates, cp, cn, peep, u, kh, kc, dhu, dcu, dhr, rm, dhd, dc, dg) -> None:
    """gates (B, 4H) activated; cn: the un-zoned c_t; updates dhd, dc in place; writes dg."""
    i, f, g, o = acc(gates).chunk(4, 1)
    c_old, c_new = acc(cp), acc(cn)
    dh = _dh(dhd, dhr, rm, dhu)
    dct = dc if dcu is None else dc + dcu
    dh_new = dh if kh is None else (1 - kh) * dh
    tc = torch.tanh(c_new)
    d_o = dh_new * tc * o * (1 - o)
    dc_new = dh_new * o * (1 - tc * tc) + (dct if kc is None else (1 - kc) * dct)
    if peep is not None:
        p_i, p_f, p_o = acc(peep).chunk(3)
        dc_new = dc_new + d_o * p_o
    gu = g if u is None else g * u
    d_i = dc_new * gu * i * (1 - i)
    d_f = dc_new * c_old * f * (1 - f)
    d_g = dc_new * i * (1 - g * g)
    d_g = d_g if u is None else d_g * u
    dc_prev = dc_new * f
    if kc is not None:
        dc_prev = dc_prev + kc * dct
    if peep is not None:
        dc_prev = dc_prev + d_i * p_i + d_f * p_f
    dc.copy_(dc_prev)
    _carry_h(dhd, dh, kh)
    _store(dg, d_i, d_f, d_g, d_o)


def gru_fwd(xg, hg, hp, u, kh, rm, h, hn, hin, train: bool) -> None:
    """xg (B, 3H) x-side r z n with b_ih; hg (B, 3H) hidden side with b_hh (torch.nn.GRU keeps b_hn
    inside r * (.)); writes h, and when training r, z, n into xg and the hidden n term into hn."""
    x_r, x_z, x_n = acc(xg).chunk(3, 1)
    h_r, h_z, h_n = acc(hg).chunk(3, 1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    h_old = acc(hp)
    h.copy_(_zone((1 - z) * (n if u is None else n * u) + z * h_old, h_old, kh))
    if hin is not None:
        torch.mul(h, rm, out=hin)
    if train:
        _store(xg, r, z, n)
        hn.copy_(h_n)


def gru_bwd(gates, hn, hp, u, kh, dhu, dhr, rm, dhd, dgx, dgh) -> None:
    """Writes the x-side (dgx) and hidden-side (dgh) pre-activation gradients, each (B, 3H)."""
    r, z, n = acc(gates).chunk(3, 1)
    h_n, h_old = acc(hn), acc(hp)
    dh = _dh(dhd, dhr, rm, dhu)
    dh_new = dh if kh is None else (1 - kh) * dh
    d_z = dh_new * (h_old - (n if u is None else n * u)) * z * (1 - z)
    d_n = dh_new * (1 - z) * (1 - n * n)
    d_n = d_n if u is None else d_n * u
    d_r = d_n * h_n * r * (1 - r)
    dhd.copy_(dh_new * z if kh is None else kh * dh + dh_new * z)
    _store(dgx, d_r, d_z, d_n)
    _store(dgh, d_r, d_z, d_n * r)


def rnn_fwd(pre, hp, kh, rm, h, hin, train: bool, act: str, threshold: float) -> None:
    """pre (B, H); act tanh, relu or trec (x * [x > threshold], Konda et al. 2015); when training
    pre is overwritten with the activation's derivative."""
    z = acc(pre)
    if act == "tanh":
        a = torch.tanh(z)
        d = 1 - a * a
    else:
        d = (z > (0.0 if act == "relu" else threshold)).to(z.dtype)
        a = z * d
    h.copy_(_zone(a, acc(hp), kh))
    if hin is not None:
        torch.mul(h, rm, out=hin)
    if train:
        pre.copy_(d)


def rnn_bwd(deriv, kh, dhu, dhr, rm, dhd, dg) -> None:
    dh = _dh(dhd, dhr, rm, dhu)
    dg.copy_((dh if kh is None else (1 - kh) * dh) * acc(deriv))
    _carry_h(dhd, dh, kh)
