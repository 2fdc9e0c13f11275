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


def refusal(what: str) -> str:
    """The one-line error of a second backward through ``what``."""
    return (f"{what} cannot differentiate twice (its backward is hand-written); for second-order "
            "gradients use implementation='reference'")


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


def refusing_twice(grads: tuple, ctx, incoming: tuple, message: str) -> tuple:
    """A backward's ``grads`` as they are, or, under ``create_graph=True`` (grad mode on inside a
    backward) and with an anchor that requires grad, tied by :class:`RefuseTwice` to the anchors:
    the ``incoming`` gradients and ``ctx``'s saved tensors (read only then: an ordinary backward
    does not unpack them twice, which a saved-tensor hook such as ``save_on_cpu`` would pay for).
    ``grads`` and ``incoming`` may hold None."""
    if not torch.is_grad_enabled():
        return grads
    anchors = (*incoming, *ctx.saved_tensors)
    if not any(isinstance(t, Tensor) and t.requires_grad for t in anchors):
        return grads
    return tuple(RefuseTwice.apply(message, len(grads), *grads, *anchors))


def backward_once(grads_of, ctx, *incoming: Tensor | None, message: str) -> tuple:
    """A Function's backward from its hand-written gradients ``grads_of(ctx, *incoming)``,
    computed without a graph, then :func:`refusing_twice`."""
    with torch.no_grad():
        grads = grads_of(ctx, *incoming)
    return refusing_twice(grads, ctx, incoming, message)
