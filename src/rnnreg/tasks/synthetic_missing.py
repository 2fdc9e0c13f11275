"""A seeded benchmark of irregular series in which WHETHER a value is measured carries the signal.

Che et al. (2018, Introduction) observe that in clinical data the missing rates correlate with
the labels ("informative missingness"), and GRU-D is built to use it: it reads
the masks and the time since each variable was last measured. Their datasets are credentialed, so
this generator reproduces the situation with a known ground truth:

- each series has T steps at irregular times (gaps uniform on [0.2, 1.8], mean 1);
- D variables follow independent Ornstein-Uhlenbeck processes (stationary N(0, 1), correlation
  time ``correlation_time``), sampled exactly at those times;
- each series draws its own base measuring rate q = (1 - missing_p) * U(0.5, 1.5), shared by all
  its variables, so a series' overall count of measurements says nothing about its class;
- the first ``informative`` variables are measured at rate q (1 + rate_effect) in class 1 and
  q (1 - rate_effect) in class 0, so the class shows in how often these are measured RELATIVE to
  the others; their values are also shifted by +-value_effect, a weak signal that a model blind
  to the masks (a GRU on mean-imputed values) can still find.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..data.missing_values import IrregularSeries


def _check(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise ValueError(f"{name} must be a number in [{low}, {high}), got {value!r}")
    return float(value)


def _ou_paths(gaps: Tensor, num_features: int, correlation_time: float, generator: torch.Generator) -> Tensor:
    """(T, N, D) stationary OU paths with unit variance, exact at irregular times (gaps (T-1, N))."""
    steps, count = gaps.shape[0] + 1, gaps.shape[1]
    noise = torch.randn(steps, count, num_features, generator=generator)  # (T, N, D)
    carry = torch.exp(-gaps / correlation_time)[:, :, None]  # (T-1, N, 1): correlation over a gap
    paths = [noise[0]]
    for t in range(1, steps):
        paths.append(carry[t - 1] * paths[-1] + torch.sqrt(1 - carry[t - 1] ** 2) * noise[t])
    return torch.stack(paths)


def make_missing_benchmark(size: int, *, seq_len: int = 48, num_features: int = 8, missing_p: float = 0.6,
                           generator: torch.Generator, informative: int | None = None,
                           rate_effect: float = 0.15, value_effect: float = 0.1,
                           correlation_time: float = 5.0) -> IrregularSeries:
    """``size`` labelled series (see the module docstring), a pure function of ``generator``'s state.

    informative: how many variables carry the class (default: half, at least 1).
    Returns :class:`IrregularSeries` with values (T, N, D) (NaN where missing), times (T, N),
    lengths all T and labels in {0, 1}.
    """
    for name, value in (("size", size), ("seq_len", seq_len), ("num_features", num_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    missing_p = _check("missing_p", missing_p, 0.0, 1.0)
    rate_effect = _check("rate_effect", rate_effect, 0.0, 1.0)
    value_effect = _check("value_effect", value_effect, 0.0, math.inf)
    correlation_time = _check("correlation_time", correlation_time, 1e-6, math.inf)
    informative = max(1, num_features // 2) if informative is None else informative
    if isinstance(informative, bool) or not isinstance(informative, int) or not 0 <= informative <= num_features:
        raise ValueError(f"informative must be an integer in [0, {num_features}], got {informative!r}")
    labels = torch.randint(0, 2, (size,), generator=generator)
    sign = (2 * labels - 1).float()  # (N,): -1 for class 0, +1 for class 1
    gaps = 0.2 + 1.6 * torch.rand(seq_len - 1, size, generator=generator)  # (T-1, N)
    times = torch.cat([torch.zeros(1, size), gaps.cumsum(0)])  # (T, N)
    values = _ou_paths(gaps, num_features, correlation_time, generator)
    chosen = torch.zeros(num_features)
    chosen[:informative] = 1.0  # (D,): which variables carry the class
    values = values + value_effect * sign[None, :, None] * chosen
    base = (1 - missing_p) * (0.5 + torch.rand(size, generator=generator))  # (N,)
    rate = base[:, None] * (1 + rate_effect * sign[:, None] * chosen)  # (N, D)
    observed = torch.rand(seq_len, size, num_features, generator=generator) < rate.clamp(0.0, 1.0)
    values = values.masked_fill(~observed, math.nan)
    names = tuple(f"v{d}" for d in range(num_features))
    return IrregularSeries(values, times, torch.full((size,), seq_len), labels,
                           tuple(f"s{n}" for n in range(size)), names)
