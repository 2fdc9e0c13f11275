"""The Clockwork RNN's recurrence (Koutnik et al. 2014, sec. 3): a fast path with a hand-written
backward pass, and the per-module reference it is tested against (tests/layers/test_clockwork.py).
The layer and its conventions (0-based clock, block-triangular W_H) are in rnnreg.layers.clockwork.

The fast path computes every module at every step and then holds each unit with weight hold_t
(1 where its module sleeps, else its zoneout keep weight): pre_t = xw_t + (h_{t-1} * rec_mask) W^T,
h_t = lerp(act(pre_t), h_{t-1}, hold_t). That is an Elman step with zoneout (Krueger et al. 2016,
eq. 5), so it has two backends:

- "python" (``_Recurrence``): a loop of torch ops, the CPU's (measured there: for layers this
  small the per-op overhead is the cost, and one autograd node per sequence saves most of it).
- "steploop" (``rnn_steploop``, kernels/steploop.py): one GEMM and one fused pointwise pass per
  step (a Triton kernel on CUDA) instead of several launches, on every other device. The step
  loop projects its input itself, so it gets xw with an identity input weight: one more
  (T*B, H) x (H, H) GEMM each way, exact (each output is one product by 1, the rest by 0) unless
  TF32 matmuls are allowed, which round xw to TF32 as they round every float32 GEMM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .autograd_modes import plain_autograd
from .precision import outside_cpu_autocast
from .reference import activation
from .refuse_twice import backward_once, refusal

TWICE = refusal("the Clockwork RNN's fast path")

BACKENDS = ("python", "steploop")


def _slope(pre: Tensor, nonlinearity: str, threshold: float) -> Tensor:
    """The activation's derivative at ``pre`` (TRec: the indicator [pre > threshold])."""
    if nonlinearity == "tanh":
        return 1.0 - torch.tanh(pre).pow(2)
    return (pre > (0.0 if nonlinearity == "relu" else threshold)).to(pre.dtype)


def _steps(xw: Tensor, h0: Tensor, w_hh: Tensor, hold: Tensor, rec_mask: Tensor | None,
           nonlinearity: str, threshold: float) -> tuple[Tensor, Tensor]:
    """The fast path's forward in torch ops: (h sequence, pre-activations), both (T, B, H)."""
    h, outs, pres = h0, [], []
    w_t = w_hh.t()
    for xw_t, hold_t in zip(xw.unbind(0), hold.unbind(0)):
        h_in = h if rec_mask is None else h * rec_mask
        pre = torch.addmm(xw_t, h_in, w_t)  # (B, H)
        h = torch.lerp(activation(pre, nonlinearity, threshold), h, hold_t)
        pres.append(pre)
        outs.append(h)
    return torch.stack(outs), torch.stack(pres)


class _Recurrence(torch.autograd.Function):
    """The fast path: every module computed at every step, each unit then kept with weight
    ``hold[t]`` (1: the module sleeps, exactly; torch.lerp returns ``end`` for weight 1), with a
    hand-written BPTT. One autograd node per sequence instead of ~10 per step: for layers this
    small on CPU the per-op overhead, not the arithmetic, is the cost."""

    @staticmethod
    def forward(ctx, xw: Tensor, h0: Tensor, w_hh: Tensor, hold: Tensor, rec_mask: Tensor | None,
                nonlinearity: str, threshold: float) -> Tensor:
        out, pre = _steps(xw, h0, w_hh, hold, rec_mask, nonlinearity, threshold)
        ctx.save_for_backward(h0, w_hh, hold, rec_mask, out, pre)
        ctx.nonlinearity, ctx.threshold = nonlinearity, threshold
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        return backward_once(_grads, ctx, grad_out, message=TWICE)  # hand-written: a second backward raises


def _grads(ctx, grad_out: Tensor) -> tuple:
    """_Recurrence's hand-written BPTT: gradients of xw, h0 and w_hh (None for the rest)."""
    # h_t = hold_t h_{t-1} + (1 - hold_t) f(pre_t), pre_t = xw_t + (m * h_{t-1}) W^T.
    h0, w_hh, hold, rec_mask, out, pre = ctx.saved_tensors
    gate = (1.0 - hold) * _slope(pre, ctx.nonlinearity, ctx.threshold)  # (T, B, H): dh_t / dpre_t
    gates, holds = gate.unbind(0), hold.unbind(0)
    from_outputs = [torch.zeros_like(grad_out[0]), *grad_out.unbind(0)[:-1]]  # [t]: output t-1's gradient
    g, d_pres = grad_out[-1], []  # g: dL/dh_t, everything downstream of h_t included
    for t in range(pre.shape[0] - 1, -1, -1):
        d = g * gates[t]
        d_pres.append(d)
        if rec_mask is None:
            g_prev = torch.addmm(from_outputs[t], d, w_hh)
        else:
            g_prev = (d @ w_hh).mul_(rec_mask).add_(from_outputs[t])
        g = g_prev.addcmul_(g, holds[t])
    d_pre = torch.stack(d_pres[::-1])  # (T, B, H)
    h_in = torch.cat([h0[None], out[:-1]])  # (T, B, H): the state each step read
    h_in = h_in if rec_mask is None else h_in * rec_mask
    size = h_in.shape[-1]
    d_w = d_pre.reshape(-1, size).t() @ h_in.reshape(-1, size)  # (T*B, H) x2 -> (H, H)
    return d_pre, g, d_w, None, None, None, None


# Under CPU autocast the loop's addmm would return a low-precision activation that lerp then meets
# with the float32 state ("expected dtype BFloat16 for `end`"): it runs in float32 with autocast
# off instead, and hands on float32, as the reference path does (kernels/precision.py).
@outside_cpu_autocast(cast_outputs=False)
def _python_loop(xw: Tensor, h0: Tensor, w_hh: Tensor, hold: Tensor, rec_mask: Tensor | None,
                 nonlinearity: str, threshold: float) -> Tensor:
    return _Recurrence.apply(xw, h0, w_hh, hold, rec_mask, nonlinearity, threshold)


def default_backend(xw: Tensor) -> str:
    """The backend ``clockwork_fast`` uses for ``xw`` unless told: "python" on the CPU, else
    "steploop" (see the module docstring)."""
    return "python" if xw.device.type == "cpu" else "steploop"


@outside_cpu_autocast(cast_outputs=False)
def _autograd_loop(xw: Tensor, h0: Tensor, w_hh: Tensor, hold: Tensor, rec_mask: Tensor | None,
                   nonlinearity: str, threshold: float) -> Tensor:
    """``_steps``' h sequence, left to autograd (forward-mode AD, torch.func). As the backends,
    outside autocast: float32 under CPU autocast (the decorator), elsewhere in w_hh's dtype."""
    with torch.autocast(xw.device.type, enabled=False):
        dt = w_hh.dtype
        mask = None if rec_mask is None else rec_mask.to(dt)
        return _steps(xw.to(dt), h0.to(dt), w_hh, hold.to(dt), mask, nonlinearity, threshold)[0]


def clockwork_fast(xw: Tensor, h0: Tensor, w_hh: Tensor, hold: Tensor, rec_mask: Tensor | None,
                   nonlinearity: str = "tanh", threshold: float = 1.0, *,
                   backend: str | None = None) -> Tensor:
    """The h sequence (T, B, H) from xw (T, B, H) input projections with bias, h0 (B, H), the full
    block-upper-triangular w_hh (H, H), hold (T, 1 or B, H) in [0, 1] (1 where a module sleeps,
    else its zoneout keep weight) and the recurrent-dropout mask (B, H) or None. backend:
    "python" or "steploop"; None: :func:`default_backend`. Gradients for xw, h0 and w_hh."""
    backend = default_backend(xw) if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not plain_autograd():  # no tangent or vmap rule for the hand-written backward: autograd's own
        return _autograd_loop(xw, h0, w_hh, hold, rec_mask, nonlinearity, threshold)
    if backend == "python":
        return _python_loop(xw, h0, w_hh, hold, rec_mask, nonlinearity, threshold)
    from .steploop import rnn_steploop  # kept out of rnnreg's import, as kernels.pick_kernel does

    identity = torch.eye(xw.shape[-1], dtype=xw.dtype, device=xw.device)  # (H, H), no grad
    return rnn_steploop(xw, h0, identity, w_hh, None, None, rec_mask, hold, nonlinearity, threshold)


def clockwork_reference(x: Tensor, h0: Tensor, w_ih: Tensor, bias: Tensor | None, blocks: list[Tensor],
                        periods: Sequence[int], column_start: Sequence[int], act: Callable[[Tensor], Tensor],
                        rec_mask: Tensor | None, zone: Tensor | None, step_offset: int = 0) -> Tensor:
    """The slow twin, module by module as Koutnik et al. (2014) write it (eq. 1 and 3).

    At time t = step_offset + s, module i (rows i*k:(i+1)*k) updates only if t mod T_i == 0, from
    the input and the part of h_{t-1} it may read (columns column_start[i]:); then zoneout mixes
    the update with the old value (keep weight ``zone[s]``). Others copy h_{t-1}. Returns (T, B, H).
    """
    k = blocks[0].shape[0]
    states = list(h0.split(k, dim=1))  # g tensors (B, k)
    outs = []
    for s in range(x.shape[0]):
        h_prev = torch.cat(states, 1)  # (B, H): every module reads h_{t-1}, not this step's updates
        h_in = h_prev if rec_mask is None else h_prev * rec_mask
        new_states = []
        for i, (period, start, block) in enumerate(zip(periods, column_start, blocks)):
            if (step_offset + s) % period != 0:
                new_states.append(states[i])
                continue
            rows = slice(i * k, (i + 1) * k)
            pre = x[s] @ w_ih[rows].t() + h_in[:, start:] @ block.t()  # (B, k)
            if bias is not None:
                pre = pre + bias[rows]
            new = act(pre)
            if zone is not None:
                keep = zone[s][:, rows]
                new = keep * states[i] + (1.0 - keep) * new
            new_states.append(new)
        states = new_states
        outs.append(torch.cat(states, 1))
    return torch.stack(outs)
