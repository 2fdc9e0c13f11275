"""The step loop's pointwise passes as Triton kernels: one launch per pass and step.

Same functions and arguments as ``steploop_torch.py`` (read its docstring for what each pass
reads and writes), with the same equations; the kernels are in ``pointwise_triton_kernels.py``.
Math in float32 for half-precision storage and in float64 for float64.

Imported only by ``steploop.pointwise_for`` when Triton can run (``steploop.triton_available``):
this module imports Triton at once. Under ``TRITON_INTERPRET=1`` (set before this module is first
imported, as Triton reads it when the kernels are defined) the kernels run on CPU tensors through
Triton's interpreter, which is how CI tests them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pointwise_triton_kernels import (gru_bwd_kernel, gru_fwd_kernel, lstm_bwd_kernel,
                                       lstm_fwd_kernel, rnn_bwd_kernel, rnn_fwd_kernel)

MAX_BLOCK = 1024  # (b, j) pairs per program
# In the launchers below an always-present tensor stands in for absent operands (never read).


def _grid(n: int) -> tuple[tuple[int], int, int]:
    """(grid, block, warps): two (b, j) pairs per thread at most. With eight (4 warps at 1024)
    ptxas spilled registers in LSTM kernels for both targets (the bf16 / fp16 forward and the
    float64 backward for sm_90, the float64 backward for sm_80); with four, in some float32 LSTM
    backward variants for sm_90 and a float64 GRU forward for sm_80; with two, in none
    (tests/kernels/test_triton_gpu_build.py with RNNREG_TRITON_BUILD_ALL=1)."""
    block = max(16, min(MAX_BLOCK, triton.next_power_of_2(n)))
    return (triton.cdiv(n, block),), block, max(1, min(16, block // 64))


def _acc(t: torch.Tensor):
    return tl.float64 if t.dtype == torch.float64 else tl.float32


def _or(t: torch.Tensor | None, stand_in: torch.Tensor) -> torch.Tensor:
    return stand_in if t is None else t


def _given(*ts) -> tuple[bool, ...]:
    """The kernels' compile-time flags: which optional operands are present."""
    return tuple(t is not None for t in ts)


def lstm_fwd(pre, hp, cp, peep, u, kh, kc, rm, h, c, cn, hin, train: bool) -> None:
    grid, block, warps = _grid(h.numel())
    lstm_fwd_kernel[grid](
        pre, hp, cp, _or(peep, h), _or(u, h), _or(kh, h), _or(kc, h), _or(rm, h), h, c, _or(cn, h),
        _or(hin, h), h.numel(), h.shape[1], _acc(h), *_given(peep, u, kh, kc, cn, hin),
        bool(train), BLOCK=block, num_warps=warps)


def lstm_bwd(gates, cp, cn, peep, u, kh, kc, dhu, dcu, dhr, rm, dhd, dc, dg) -> None:
    grid, block, warps = _grid(dhd.numel())
    lstm_bwd_kernel[grid](
        gates, cp, cn, _or(peep, dhd), _or(u, dhd), _or(kh, dhd), _or(kc, dhd), _or(dhu, dhd),
        _or(dcu, dhd), dhr, _or(rm, dhd), dhd, dc, dg, dhd.numel(), dhd.shape[1], _acc(cp),
        *_given(peep, u, kh, kc, dhu, dcu, rm), BLOCK=block, num_warps=warps)


def gru_fwd(xg, hg, hp, u, kh, rm, h, hn, hin, train: bool) -> None:
    grid, block, warps = _grid(h.numel())
    gru_fwd_kernel[grid](
        xg, hg, hp, _or(u, h), _or(kh, h), _or(rm, h), h, _or(hn, h), _or(hin, h), h.numel(),
        h.shape[1], _acc(h), *_given(u, kh, hin), bool(train), BLOCK=block, num_warps=warps)


def gru_bwd(gates, hn, hp, u, kh, dhu, dhr, rm, dhd, dgx, dgh) -> None:
    grid, block, warps = _grid(dhd.numel())
    gru_bwd_kernel[grid](
        gates, hn, hp, _or(u, dhd), _or(kh, dhd), _or(dhu, dhd), dhr, _or(rm, dhd), dhd, dgx, dgh,
        dhd.numel(), dhd.shape[1], _acc(hp), *_given(u, kh, dhu, rm), BLOCK=block, num_warps=warps)


def rnn_fwd(pre, hp, kh, rm, h, hin, train: bool, act: str, threshold: float) -> None:
    grid, block, warps = _grid(h.numel())
    rnn_fwd_kernel[grid](
        pre, hp, _or(kh, h), _or(rm, h), h, _or(hin, h), h.numel(),
        0.0 if act == "relu" else float(threshold), _acc(h), act == "tanh", *_given(kh, hin),
        bool(train), BLOCK=block, num_warps=warps)


def rnn_bwd(deriv, kh, dhu, dhr, rm, dhd, dg) -> None:
    grid, block, warps = _grid(dhd.numel())
    rnn_bwd_kernel[grid](
        deriv, _or(kh, dhd), _or(dhu, dhd), dhr, _or(rm, dhd), dhd, dg, dhd.numel(), _acc(deriv),
        *_given(kh, dhu, rm), BLOCK=block, num_warps=warps)
