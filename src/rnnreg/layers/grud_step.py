"""GRU-D's recurrent step and time loop, op by op or as one compiled function per step.

The step (Che et al. 2018, sec. "GRU-D", with torch.nn.GRU's gates as rnnreg.layers.grud says):
the hidden decay h^_{t-1} = gamma_h,t * h_{t-1}, the recurrent product U (h^_{t-1} * rec) + b_hh
(Gal & Ghahramani 2016 mask), the gates r, z and the candidate n on the input side gi_t
(W x^_t + V m_t + b, computed for all steps before the loop), n times Semeniuta et al.'s (2016,
eq. 8) update mask, and zoneout towards h^_{t-1} (Krueger et al. 2017, eq. 5). Inputs that
depend on the recurrence cannot be batched over time, so the loop runs this body T times.

Op by op that is about fifteen small kernels per step: on a GPU the launches, not the arithmetic,
are the cost. :func:`compiled_step` is the same function through ``torch.compile`` (fullgraph,
static shapes): Inductor fuses the pointwise math around the recurrent GEMM into a few kernels,
and AOTAutograd gives each step one compiled backward node. It is used on non-CPU devices by
default (``GRUD(compile_step=None)``); on the CPU only when forced (``compile_step=True``, the
tests): there it saved nothing (T=48, B=64, D=33, H=64, float32, one thread: 51 ms per forward
and backward either way) and the first call compiles for about 10 s.

One graph serves every regularizer setting: the compiled call always gets three mask tensors, a
neutral one (ones, ones, zeros) where a regularizer is off. Multiplying by 1 and zoning out with
weight 0 change no value, so the results are the op-by-op loop's up to Inductor's rounding (the
tests: 1e-10 in float64); dynamo would otherwise compile a graph per combination of absent
masks. It still compiles once per batch size, hidden size, dtype, device and grad mode; past
dynamo's limit on graphs per function (``recompile_limit``, where ``fullgraph`` raises) a call
runs op by op instead, logged once.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from ..regularizers.step_noise import StepNoise

logger = logging.getLogger(__name__)


def grud_step(h: Tensor, gamma_h: Tensor, gi: Tensor, w_hh: Tensor, b_hh: Tensor,
              rec: Tensor | None, update: Tensor | None, keep: Tensor | None) -> Tensor:
    """h_t (B, H) from h_{t-1} (B, H), gamma_h (B, H), gi (B, 3H) and the step's masks (B, H),
    each None when off (see the module docstring)."""
    h = gamma_h * h  # hidden decay h^_{t-1}
    gh = F.linear(h if rec is None else h * rec, w_hh, b_hh)  # (B, 3H)
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)  # reset after the product, as torch.nn.GRU
    if update is not None:
        n = n * update
    new = (1 - z) * n + z * h
    return new if keep is None else keep * h + (1 - keep) * new


@functools.cache
def compiled_step():
    """:func:`grud_step` through ``torch.compile``, one wrapper (and one dynamo cache) per process."""
    return torch.compile(grud_step, fullgraph=True, dynamic=False)


def compiles_by_default(device: torch.device) -> bool:
    """Whether GRU-D compiles its step on ``device`` unless told: everywhere but the CPU."""
    return device.type != "cpu"


@functools.cache
def _log_limit_once() -> None:
    logger.warning("GRU-D: dynamo's recompile_limit is reached for the compiled step; calls "
                   "needing a new graph run op by op")


def _grad_later(*tensors: Tensor | None) -> bool:
    """Whether the states after step 0 require grad (what dynamo will see from step 1 on)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def run_steps(h: Tensor, gamma_h: Tensor, gi: Tensor, w_hh: Tensor, b_hh: Tensor,
              noise: StepNoise, compiled: bool) -> Tensor:
    """The h sequence (T, B, H) from h_0 (B, H), gamma_h (T, B, H), gi (T, B, 3H) and noise
    (rec (B, H), update and keep_h (T, B, H), each or None)."""
    if compiled:
        return _run_compiled(h, gamma_h, gi, w_hh, b_hh, noise)
    outs = []
    for t in range(gi.shape[0]):
        h = grud_step(h, gamma_h[t], gi[t], w_hh, b_hh, noise.rec, _at(noise.update, t),
                      _at(noise.keep_h, t))
        outs.append(h)
    return torch.stack(outs)  # (T, B, H)


def _run_compiled(h: Tensor, gamma_h: Tensor, gi: Tensor, w_hh: Tensor, b_hh: Tensor,
                  noise: StepNoise) -> Tensor:
    from torch._dynamo.exc import FailOnRecompileLimitHit  # dynamo is imported by then

    step = compiled_step()
    rec = h.new_ones(h.shape) if noise.rec is None else noise.rec  # neutral masks: one graph
    update_off, keep_off = h.new_ones(h.shape), h.new_zeros(h.shape)
    # dynamo guards on requires_grad: an h_0 that differs there from the later states (one
    # without grad in training, say) takes step 0 op by op rather than a second graph.
    first = step if h.requires_grad == _grad_later(h, gamma_h, gi, w_hh, b_hh) else grud_step
    outs = []
    for t in range(gi.shape[0]):
        update = update_off if noise.update is None else noise.update[t]
        keep = keep_off if noise.keep_h is None else noise.keep_h[t]
        args = (gamma_h[t], gi[t], w_hh, b_hh, rec, update, keep)
        try:
            h = (step if t else first)(h, *args)
        except FailOnRecompileLimitHit:  # raised before the step runs: h is still h_{t-1}
            _log_limit_once()
            step = grud_step
            h = step(h, *args)
        outs.append(h)
    return torch.stack(outs)  # (T, B, H)


def _at(t: Tensor | None, step: int) -> Tensor | None:
    return None if t is None else t[step]
