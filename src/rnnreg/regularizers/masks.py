"""The one place where dropout-style masks are drawn and probabilities are checked.

Every stochastic regularizer in rnnreg draws its mask here, so they share one RNG stream, one
scaling rule (inverted dropout: kept units are scaled by 1/(1-p) so the expectation is unchanged),
and one error message for bad rates.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_probability(name: str, p: float) -> float:
    """Return ``p`` as a float if it lies in [0, 1); raise a ValueError naming the argument otherwise."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(p).__name__} {p!r}")
    p = float(p)
    if math.isnan(p) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
    return p


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as a float if it is finite and >= 0 (penalty weights, noise std)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number >= 0, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def dropout_mask(shape: tuple[int, ...] | torch.Size, p: float, like: Tensor) -> Tensor:
    """A keep-mask scaled by 1/(1-p): entries are 0 with probability p, else 1/(1-p).

    Drawn as ``rand >= p`` rather than ``bernoulli_``: on the 2-core CPU this project targets the
    comparison is markedly faster (benchmarks/README.md), and the distribution is the same.
    """
    keep = torch.rand(shape, dtype=like.dtype, device=like.device) >= p
    return keep.to(like.dtype).div_(1.0 - p)


def bernoulli_keep(prob: Tensor) -> Tensor:
    """Binary mask, 1 with the given per-element probability (zoneout's 'keep the old value')."""
    return (torch.rand_like(prob) < prob).to(prob.dtype)
