"""What GRU-D reads besides the values: the mask, the time since each observation, the last value.

Che et al. (2018), "Recurrent neural networks for multivariate time series with missing values",
Sci. Rep. 8:6085, sec. "Notations": a series of T observations x_t in R^D taken at timestamps s_t;
the mask m_t^d = 1 when variable d is observed at step t; the time interval delta_t^d since its last
observation (their eq. 2):

    delta_t^d = s_t - s_{t-1} + delta_{t-1}^d   if t > 1 and m_{t-1}^d = 0
                s_t - s_{t-1}                   if t > 1 and m_{t-1}^d = 1
                0                               if t = 1

and x_last, the last observed value of each variable (the input decay's starting point). These
are the layer's input preparation, so they live beside :class:`rnnreg.layers.GRUD` (which fills
in x_last itself when not given); dataset-level statistics (the empirical mean the imputation falls
back to) and the series container stay in :mod:`rnnreg.data.missing_values`.

Layout: every function here is time-major. ``values`` is (T, *batch, D) with any number of batch
dims (none for one series (T, D); one for (T, B, D)), NaN where a value is missing; ``times`` is
(T,) shared by all series or (T, *batch) per series. Pass ``batch_first=True`` for (B, T, D) values
and (B, T) times: the results then come back batch-first too.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _time_major(tensor: Tensor, batch_first: bool) -> Tensor:
    return tensor.transpose(0, 1) if batch_first and tensor.dim() >= 2 else tensor  # (B, T, ...) <-> (T, B, ...)


def observation_mask(values: Tensor) -> Tensor:
    """m: 1.0 where a value is observed (not NaN), 0.0 where it is missing; values' shape and dtype."""
    if not values.is_floating_point():
        raise TypeError(f"values must be a floating-point tensor with NaN for missing, got {values.dtype}")
    return (~torch.isnan(values)).to(values.dtype)


def time_since_observed(mask: Tensor, times: Tensor | None = None, *, batch_first: bool = False) -> Tensor:
    """delta (mask's shape): time since each variable's last observation before step t, Che et al.
    (2018) eq. 2 (see the module docstring). ``times`` None means unit steps s_t = t."""
    m = _time_major(mask, batch_first)  # (T, *batch, D)
    if m.dim() < 2:
        raise ValueError(f"mask must be (T, ..., D), got shape {tuple(mask.shape)}")
    steps = m.shape[0]
    if times is None:
        s = torch.arange(steps, dtype=m.dtype, device=m.device)
    else:
        s = _time_major(times, batch_first).to(m.dtype)
    if s.shape != m.shape[:s.dim()] or s.dim() > m.dim() - 1:
        raise ValueError(f"times must be (T,) or (T, *batch) for a mask of shape {tuple(mask.shape)}, "
                         f"got {tuple(times.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError("times must be finite")
    gaps = torch.diff(s, dim=0)  # (T-1, *batch)
    if (gaps < 0).any():
        raise ValueError("times must not decrease along the time axis")
    gaps = gaps.reshape(*gaps.shape, *[1] * (m.dim() - gaps.dim()))  # (T-1, *batch or 1s, 1)
    delta = [torch.zeros_like(m[0])]
    for t in range(1, steps):
        delta.append(gaps[t - 1] + (1 - m[t - 1]) * delta[-1])
    return _time_major(torch.stack(delta), batch_first)


def last_observed(values: Tensor, mask: Tensor, fallback: Tensor, *, batch_first: bool = False) -> Tensor:
    """x_last (values' shape): the most recent observed value of each variable at or before step t
    (forward fill), ``fallback`` (D,) before a variable's first observation.

    Che et al. define x_{t'} with t' < t; GRU-D reads it only where m_t = 0, where "at or before"
    and "before" agree. Missing entries of ``values`` may hold anything (NaN included).
    """
    x, m = _time_major(values, batch_first), _time_major(mask, batch_first)
    if x.shape != m.shape or fallback.shape != x.shape[-1:]:
        raise ValueError(f"values {tuple(values.shape)}, mask {tuple(mask.shape)} and fallback "
                         f"{tuple(fallback.shape)} must agree (fallback: (D,))")
    last = fallback.to(x.dtype).expand_as(x[0])
    filled = []
    for x_t, m_t in zip(x.unbind(0), m.unbind(0)):
        last = torch.where(m_t > 0, x_t, last)
        filled.append(last)
    return _time_major(torch.stack(filled), batch_first)


def grud_inputs(values: Tensor, times: Tensor | None, x_mean: Tensor, *,
                batch_first: bool = False) -> dict[str, Tensor]:
    """Everything GRU-D reads, in values' layout: ``x`` (missing entries set to 0, so no NaN reaches
    a model), ``mask``, ``delta`` and ``x_last`` (falling back to ``x_mean`` (D,))."""
    mask = observation_mask(values)
    return {"x": torch.nan_to_num(values, nan=0.0), "mask": mask,
            "delta": time_since_observed(mask, times, batch_first=batch_first),
            "x_last": last_observed(values, mask, x_mean, batch_first=batch_first)}
