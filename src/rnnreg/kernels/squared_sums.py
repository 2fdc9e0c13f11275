"""Means of squares with hand-written backward passes, for AR and TAR (rnnreg/penalties.py).

Why: written as ``alpha * h.pow(2).mean()`` and ``beta * (h[1:] - h[:-1]).pow(2).mean()``,
autograd's backward makes about ten passes over (T, B, H) tensors: the mean's expanded gradient,
the power's two multiplications, the subtraction's negation and two zero-filled slice gradients and
their sum. Here forward + backward of AR + TAR (Merity et al. 2017) take 446 against 477 us on the
small benchmark size's output and 7.0 against 19.9 ms on AWD-LSTM's (2-core Xeon, 2026-12-03:
benchmarks/bench_kernel_parts.py, "regularizers"); on tiny tensors the Python overhead of an
autograd.Function makes them some tens of microseconds slower. The forward values are the autograd
form's, bit for bit in every dtype (tests/kernels/test_squared_sums.py); the gradients are the
closed forms, ``2 g h / n`` for AR and ``2 g L h / n`` for TAR, where ``L = D^T D`` is the second
difference along time (D the first difference). Both backward passes are built from differentiable
operations on the saved input, so second-order gradients (a gradient penalty, a Hessian-vector
product) are exact too. They are for plain autograd only: under forward-mode AD or a torch.func
transform ``autograd_modes.plain_autograd()`` is False and the penalties take the autograd forms (a
custom ``jvp`` would make dynamo refuse ``fullgraph=True`` around them).
"""

from __future__ import annotations

import torch
from torch import Tensor


class _SavesItsInput(torch.autograd.Function):
    """A penalty of one sequence h whose backward reads h itself (alive anyway as the layer's
    output), not an intermediate: nothing else is kept, and an in-place change to h before the
    backward is caught by autograd's version check."""

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        (h,) = inputs
        ctx.save_for_backward(h)


class MeanOfSquares(_SavesItsInput):
    """``mean(h ** 2)`` over every element, the very expression ``h.pow(2).mean()`` (its bits in
    every dtype: half precision accumulates in float32 and rounds once); gradient ``2 g h / n``."""

    @staticmethod
    def forward(h: Tensor) -> Tensor:
        return h.square().mean()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (h,) = ctx.saved_tensors
        return h * (grad * (2.0 / h.numel()))


class MeanOfSquaredSteps(_SavesItsInput):
    """``mean((h[1:] - h[:-1]) ** 2)`` for h (T, B, ...) with T >= 2, the autograd form's bits;
    gradient ``2 g L h / n`` with n the number of differences."""

    @staticmethod
    def forward(h: Tensor) -> Tensor:
        return torch.diff(h, dim=0).square().mean()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (h,) = ctx.saved_tensors
        return SecondDifference.apply(h) * (grad * (2.0 / h[1:].numel()))


class SecondDifference(torch.autograd.Function):
    """``L h = D^T D h`` along dim 0. L is linear and symmetric, so its backward is L applied to
    the gradient."""

    @staticmethod
    def forward(ctx, h: Tensor) -> Tensor:  # nothing to save: L does not depend on h
        return second_difference(h)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return SecondDifference.apply(grad)


def second_difference(h: Tensor) -> Tensor:
    """(L h)_0 = h_0 - h_1, (L h)_t = 2 h_t - h_{t-1} - h_{t+1}, (L h)_{T-1} = h_{T-1} - h_{T-2}:
    the gradient of sum_t (h_t - h_{t-1})^2 / 2 with respect to h. h: (T, B, ...), T >= 2."""
    d = torch.diff(h, dim=0)  # (T-1, B, ...): d_t = h_{t+1} - h_t
    return torch.cat([-d[:1], d[:-1] - d[1:], d[-1:]])  # (1 + (T-2) + 1, B, ...) = (T, B, ...)
