"""Hand-written backward passes that cannot be differentiated again, made to say so.

rnnreg's fast recurrences (the C++ kernels, the step loop, the Clockwork RNN's loop) compute
their gradients by hand, from intermediates that autograd does not see: a second backward through
them (a gradient penalty, a Hessian-vector product) would miss terms. The stock guard,
``torch.autograd.function.once_differentiable``, raises only when the incoming gradient itself
requires grad, from a node hanging off detached copies: with a loss linear in the output (its
gradient a constant), or under ``torch.autograd.grad(..., inputs=...)`` and
``torch.autograd.functional.hvp``, the second-order terms of x and W_hh came back None or wrong
without an error. Here, under ``create_graph=True``, the backward's gradients pass through
:class:`RefuseTwice`: the identity on them, whose inputs also include what they were computed
from (the incoming gradients and the saved tensors, among them the layer's inputs and weights), so
every second-order path reaches it, and it raises.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RefuseTwice(torch.autograd.Function):
    """apply(message, n, *tensors): copies of the first ``n`` tensors (the gradients), with the
    rest (what they were computed from) as inputs too; its backward raises ``message``."""

    @staticmethod
    def forward(ctx, message: str, n: int, *tensors: Tensor | None):
        ctx.message = message
        # Copies, not views: a view made inside a Function may not be modified in place later.
        return tuple(None if g is None else g.clone() for g in tensors[:n])

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(ctx.message)


def refusing_twice(grads: tuple, anchors: tuple, message: str) -> tuple:
    """A backward's ``grads`` as they are, or, under ``create_graph=True`` (grad mode on inside a
    backward) and with an anchor that requires grad, tied to ``anchors`` by :class:`RefuseTwice`.
    ``grads`` may hold None (no gradient for that input); ``anchors`` may hold None."""
    if not torch.is_grad_enabled():
        return grads
    if not any(isinstance(t, Tensor) and t.requires_grad for t in anchors):
        return grads
    return tuple(RefuseTwice.apply(message, len(grads), *grads, *anchors))
