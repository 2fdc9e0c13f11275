"""The one place where dropout-style masks are drawn and probabilities are checked.

Every stochastic regularizer in rnnreg draws its mask here, so they share one RNG stream, one
scaling rule (inverted dropout: kept units are scaled by 1/(1-p) so the expectation is unchanged),
and one error message for bad rates.

CPU float32 / float64 masks come from the C++ extension's counter-based generator
(csrc/masks.cpp) when it is available: torch.rand costs ~8-9.5 ns per element here on one thread,
which made weight drop and zoneout masks 7-15% of a training step; the hash-based masks cost
~1.4 ns per element on one thread and ~0.7 on two. Each mask takes ONE draw (a 64-bit seed) from
torch's default generator, so ``torch.manual_seed`` still reproduces it, and its values do not
depend on the thread count. Anything else (CUDA, half precision, no extension) uses torch.rand;
both draw u ~ U[0, 1) and keep ``u >= p`` (dropout) or ``u < prob`` (zoneout), so the
distributions are the same, though the two paths give different masks for one seed.

Weight noise's Gaussian draws live here too, for the same reasons: on the fast path
(csrc/noise.cpp) a Box-Muller transform of two counter-based uniforms, ~1.2 ns per element on one
thread here against ~4.4 for torch.randn, and split across threads; elsewhere torch.randn.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor


def check_probability(name: str, p: float) -> float:
    """Return ``p`` as a float if it lies in [0, 1); raise a ValueError naming the argument otherwise."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):  # NumPy scalars too
        raise TypeError(f"{name} must be a number in [0, 1), got {type(p).__name__} {p!r}")
    p = float(p)
    # NaN fails both comparisons. No math.isnan: under torch.compile(dynamic=True) p is a
    # symbolic float, which comparisons take and math.isnan does not.
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
    return p


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as a float if it is finite and >= 0 (penalty weights, noise std)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number >= 0, got {type(value).__name__} {value!r}")
    value = float(value)
    if not 0.0 <= value < math.inf:  # NaN and inf fail it; comparisons, as in check_probability
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _fast(like: Tensor):
    """The fast kernels module when ``like`` is a CPU float32/float64 tensor and the extension
    loads, else None. Imported here, not at the top: kernels -> layers -> masks would be a cycle."""
    if like.device.type != "cpu" or like.dtype not in (torch.float32, torch.float64):
        return None
    from ..kernels import fast

    return fast if fast.fast_available() else None


def dropout_mask(shape: tuple[int, ...] | torch.Size, p: float, like: Tensor) -> Tensor:
    """A keep-mask scaled by 1/(1-p): entries are 0 with probability p, else 1/(1-p).

    The fallback draws ``rand >= p`` rather than ``bernoulli_``, which costs about three times as
    much per element on this project's 2-core CPU (measured: ~31 vs ~11 ns); same distribution.
    """
    fast = _fast(like)
    if fast is not None:
        return fast.fast_dropout_mask(shape, p, like)
    keep = torch.rand(shape, dtype=like.dtype, device=like.device) >= p
    return keep.to(like.dtype).div_(1.0 - p)


def apply_dropout(x: Tensor, p: float) -> Tensor:
    """``x * dropout_mask(x.shape, p, x)``: the same values for the same generator state, and
    the same gradient (the mask times the incoming one). On the fast path one pass over x, the
    mask never stored (its backward draws it again from the seed): weight drop's W_hh, where
    drawing, storing and twice reading a mask of the matrix's size cost about three passes."""
    fast = _fast(x)
    if fast is not None:
        return fast.fast_dropout(x, p)
    return x * dropout_mask(x.shape, p, x)


def bernoulli_keep(prob: Tensor) -> Tensor:
    """Binary mask, 1 with the given per-element probability (zoneout's 'keep the old value')."""
    fast = _fast(prob)
    if fast is not None:
        return fast.fast_keep_mask(prob)
    return (torch.rand_like(prob) < prob).to(prob.dtype)


def keep_mask(shape: tuple[int, ...] | torch.Size, prob: float, like: Tensor) -> Tensor:
    """Binary mask in like's dtype and device, 1 with the constant probability ``prob``.

    Same as ``bernoulli_keep(like.new_full(shape, prob))`` (the very same mask on the fast path,
    for the same generator state) without filling a probability tensor first.
    """
    fast = _fast(like)
    if fast is not None:
        return fast.fast_keep_mask_const(shape, prob, like)
    return bernoulli_keep(like.new_full(shape, prob))


def normal_noise(shape: tuple[int, ...] | torch.Size, std: float, like: Tensor) -> Tensor:
    """``std`` times standard normal draws, in like's dtype and device (weight noise, Graves 2011)."""
    fast = _fast(like)
    if fast is not None:
        return fast.fast_normal_noise(shape, std, like)
    return torch.randn(shape, dtype=like.dtype, device=like.device) * std
