"""The Triton kernels behind ``pointwise_triton.py`` (which launches them; read its docstring and
``steploop_torch.py``'s for what each pass reads and writes).

Each kernel covers the B*H (b, j) pairs of one step, all gates of a pair in one program: k is the
flat index into a (B, H) tensor, and gate q of (b, j) sits at b * G*H + q*H + j = k + (G-1) * b*H
in a (B, G*H) one. Absent operands are compile-time flags (PEEP, U, KH, KC, RM, DHU, DCU: peepholes,
update mask, zoneout weights, recurrent-dropout mask, upstream gradients), so each combination
compiles without them; ACC is the math's dtype. Only Triton's builtins are used (tl.full, not the
jit-defined tl.zeros / tl.sigmoid of triton.language.standard), so the interpreter also runs these
kernels when Triton itself was imported before TRITON_INTERPRET was set. The equations are reference.py's, the backward
ones term for term steploop_torch.py's.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _lerp(new, old, w):
    # torch.lerp's two-sided form: exactly `old` at w = 1 and `new` at w = 0, so a held unit (a
    # padded step, a sleeping Clockwork module) is frozen bit for bit, not drifted by rounding.
    return tl.where(w < 0.5, new + w * (old - new), old - (old - new) * (1.0 - w))


@triton.jit
def _tanh(x):
    # tanh(x) = 2 sigmoid(2x) - 1: exact for the saturated ends (exp overflows to inf, giving -1)
    return 2.0 / (1.0 + tl.exp(-2.0 * x)) - 1.0


@triton.jit
def _ld(ptr, k, m, ACC: tl.constexpr):
    return tl.load(ptr + k, mask=m).to(ACC)


@triton.jit
def _st(ptr, k, value, m):
    tl.store(ptr + k, value.to(ptr.dtype.element_ty), mask=m)


@triton.jit
def _st_h(h, hin, rm, k, value, m, ACC: tl.constexpr, HIN: tl.constexpr):
    # h_t, and (HIN) the next GEMM's input: the stored (rounded) h_t times the dropout mask
    hv = value.to(h.dtype.element_ty)
    tl.store(h + k, hv, mask=m)
    if HIN:
        _st(hin, k, hv.to(ACC) * _ld(rm, k, m, ACC), m)


@triton.jit
def lstm_fwd_kernel(pre, hp, cp, peep, u, kh, kc, rm, h, c, cn, hin, N, H, ACC: tl.constexpr,
                    PEEP: tl.constexpr, U: tl.constexpr, KH: tl.constexpr, KC: tl.constexpr,
                    CN: tl.constexpr, HIN: tl.constexpr, TRAIN: tl.constexpr, BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # flat (b, j) over (B, H)
    m = k < N
    j = k % H
    gk = k + (k // H) * 3 * H  # gate i of (b, j) in (B, 4H): b * 4H + j
    c_old = _ld(cp, k, m, ACC)
    zi = _ld(pre, gk, m, ACC)
    zf = _ld(pre, gk + H, m, ACC)
    zo = _ld(pre, gk + 3 * H, m, ACC)
    if PEEP:  # i and f look at c_{t-1}, o at c_t (Gers & Schmidhuber 2000)
        zi += _ld(peep, j, m, ACC) * c_old
        zf += _ld(peep, j + H, m, ACC) * c_old
    i = _sigmoid(zi)
    f = _sigmoid(zf)
    g = _tanh(_ld(pre, gk + 2 * H, m, ACC))
    gu = g
    if U:  # Semeniuta et al. 2016 eq. 8
        gu = g * _ld(u, k, m, ACC)
    c_new = f * c_old + i * gu
    if PEEP:
        zo += _ld(peep, j + 2 * H, m, ACC) * c_new
    o = _sigmoid(zo)
    h_new = o * _tanh(c_new)  # from the un-zoned cell (Krueger et al. 2016 eq. 6)
    c_out = c_new
    if KH:  # zoneout, Krueger et al. 2016 eq. 5: lerp(new, old, d_t)
        h_new = _lerp(h_new, _ld(hp, k, m, ACC), _ld(kh, k, m, ACC))
    if KC:
        c_out = _lerp(c_new, c_old, _ld(kc, k, m, ACC))
    _st(c, k, c_out, m)
    if CN:
        _st(cn, k, c_new, m)
    _st_h(h, hin, rm, k, h_new, m, ACC, HIN)
    if TRAIN:
        _st(pre, gk, i, m)
        _st(pre, gk + H, f, m)
        _st(pre, gk + 2 * H, g, m)
        _st(pre, gk + 3 * H, o, m)


@triton.jit
def _dh(dhd, dhr, rm, dhu, k, m, ACC: tl.constexpr, RM: tl.constexpr, DHU: tl.constexpr):
    # dL/dh_t: carried direct part + recurrent part (masked as h_t entered W_hh) + upstream
    rec = _ld(dhr, k, m, ACC)
    if RM:
        rec *= _ld(rm, k, m, ACC)
    dh = _ld(dhd, k, m, ACC) + rec
    if DHU:
        dh += _ld(dhu, k, m, ACC)
    return dh


@triton.jit
def _zone_split(d, w, k, m, ACC: tl.constexpr, ON: tl.constexpr, BLOCK: tl.constexpr):
    # Zoneout backward (Krueger et al. 2016 eq. 5, s_t = lerp(new, old, w_t)): of the gradient d on
    # s_t, (1 - w_t) d reaches the new value and w_t d the previous state (0 without zoneout).
    d_new = d
    d_prev = tl.full([BLOCK], 0.0, ACC)
    if ON:
        w_t = _ld(w, k, m, ACC)
        d_new = (1.0 - w_t) * d
        d_prev = w_t * d
    return d_new, d_prev


@triton.jit
def lstm_bwd_kernel(gates, cp, cn, peep, u, kh, kc, dhu, dcu, dhr, rm, dhd, dc, dg, N, H,
                    ACC: tl.constexpr, PEEP: tl.constexpr, U: tl.constexpr, KH: tl.constexpr,
                    KC: tl.constexpr, DHU: tl.constexpr, DCU: tl.constexpr, RM: tl.constexpr,
                    BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = k < N
    j = k % H
    gk = k + (k // H) * 3 * H
    i = _ld(gates, gk, m, ACC)
    f = _ld(gates, gk + H, m, ACC)
    g = _ld(gates, gk + 2 * H, m, ACC)
    o = _ld(gates, gk + 3 * H, m, ACC)
    c_old = _ld(cp, k, m, ACC)
    dh = _dh(dhd, dhr, rm, dhu, k, m, ACC, RM, DHU)
    dct = _ld(dc, k, m, ACC)
    if DCU:
        dct += _ld(dcu, k, m, ACC)
    dh_new, dh_prev = _zone_split(dh, kh, k, m, ACC, KH, BLOCK)
    dc_zone, dc_prev = _zone_split(dct, kc, k, m, ACC, KC, BLOCK)
    tc = _tanh(_ld(cn, k, m, ACC))
    d_o = dh_new * tc * o * (1.0 - o)
    dc_new = dh_new * o * (1.0 - tc * tc) + dc_zone
    if PEEP:
        dc_new += d_o * _ld(peep, j + 2 * H, m, ACC)
    gu = g
    iu = i
    if U:
        uj = _ld(u, k, m, ACC)
        gu = g * uj
        iu = i * uj
    d_i = dc_new * gu * i * (1.0 - i)
    d_f = dc_new * c_old * f * (1.0 - f)
    d_g = dc_new * iu * (1.0 - g * g)
    dc_prev += dc_new * f
    if PEEP:
        dc_prev += d_i * _ld(peep, j, m, ACC) + d_f * _ld(peep, j + H, m, ACC)
    _st(dc, k, dc_prev, m)
    _st(dhd, k, dh_prev, m)
    _st(dg, gk, d_i, m)
    _st(dg, gk + H, d_f, m)
    _st(dg, gk + 2 * H, d_g, m)
    _st(dg, gk + 3 * H, d_o, m)


@triton.jit
def gru_fwd_kernel(xg, hg, hp, u, kh, rm, h, hn, hin, N, H, ACC: tl.constexpr, U: tl.constexpr,
                   KH: tl.constexpr, HIN: tl.constexpr, TRAIN: tl.constexpr, BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = k < N
    gk = k + (k // H) * 2 * H  # gate r of (b, j) in (B, 3H): b * 3H + j
    r = _sigmoid(_ld(xg, gk, m, ACC) + _ld(hg, gk, m, ACC))
    z = _sigmoid(_ld(xg, gk + H, m, ACC) + _ld(hg, gk + H, m, ACC))
    h_n = _ld(hg, gk + 2 * H, m, ACC)  # W_hn h_in + b_hn, inside r * (.) as in torch.nn.GRU
    n = _tanh(_ld(xg, gk + 2 * H, m, ACC) + r * h_n)
    h_old = _ld(hp, k, m, ACC)
    nu = n
    if U:
        nu = n * _ld(u, k, m, ACC)
    h_new = (1.0 - z) * nu + z * h_old
    if KH:
        h_new = _lerp(h_new, h_old, _ld(kh, k, m, ACC))
    _st_h(h, hin, rm, k, h_new, m, ACC, HIN)
    if TRAIN:
        _st(xg, gk, r, m)
        _st(xg, gk + H, z, m)
        _st(xg, gk + 2 * H, n, m)
        _st(hn, k, h_n, m)


@triton.jit
def gru_bwd_kernel(gates, hn, hp, u, kh, dhu, dhr, rm, dhd, dgx, dgh, N, H, ACC: tl.constexpr,
                   U: tl.constexpr, KH: tl.constexpr, DHU: tl.constexpr, RM: tl.constexpr,
                   BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = k < N
    gk = k + (k // H) * 2 * H
    r = _ld(gates, gk, m, ACC)
    z = _ld(gates, gk + H, m, ACC)
    n = _ld(gates, gk + 2 * H, m, ACC)
    dh = _dh(dhd, dhr, rm, dhu, k, m, ACC, RM, DHU)
    dh_new, dh_prev = _zone_split(dh, kh, k, m, ACC, KH, BLOCK)
    nu = n
    d_n = dh_new * (1.0 - z) * (1.0 - n * n)
    if U:
        uj = _ld(u, k, m, ACC)
        nu = n * uj
        d_n = d_n * uj
    d_z = dh_new * (_ld(hp, k, m, ACC) - nu) * z * (1.0 - z)
    d_r = d_n * _ld(hn, k, m, ACC) * r * (1.0 - r)
    _st(dhd, k, dh_prev + dh_new * z, m)
    _st(dgx, gk, d_r, m)
    _st(dgx, gk + H, d_z, m)
    _st(dgx, gk + 2 * H, d_n, m)
    _st(dgh, gk, d_r, m)
    _st(dgh, gk + H, d_z, m)
    _st(dgh, gk + 2 * H, d_n * r, m)


@triton.jit
def rnn_fwd_kernel(pre, hp, kh, rm, h, hin, N, threshold, ACC: tl.constexpr, TANH: tl.constexpr,
                   KH: tl.constexpr, HIN: tl.constexpr, TRAIN: tl.constexpr, BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = k < N
    z = _ld(pre, k, m, ACC)
    if TANH:
        a = _tanh(z)
        d = 1.0 - a * a
    else:  # ReLU (threshold 0) or TRec, x * [x > theta] (Konda et al. 2015)
        d = tl.where(z > threshold, 1.0, 0.0).to(ACC)
        a = z * d
    if KH:
        a = _lerp(a, _ld(hp, k, m, ACC), _ld(kh, k, m, ACC))
    _st_h(h, hin, rm, k, a, m, ACC, HIN)
    if TRAIN:
        _st(pre, k, d, m)


@triton.jit
def rnn_bwd_kernel(deriv, kh, dhu, dhr, rm, dhd, dg, N, ACC: tl.constexpr, KH: tl.constexpr,
                   DHU: tl.constexpr, RM: tl.constexpr, BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = k < N
    dh = _dh(dhd, dhr, rm, dhu, k, m, ACC, RM, DHU)
    dh_new, dh_prev = _zone_split(dh, kh, k, m, ACC, KH, BLOCK)
    _st(dg, k, dh_new * _ld(deriv, k, m, ACC), m)
    _st(dhd, k, dh_prev, m)
