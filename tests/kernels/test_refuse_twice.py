"""kernels/refuse_twice.py on its own: the gradients pass unchanged outside create_graph, None
entries and non-tensor anchors are taken, and a second backward through it raises its message.
The hand-written backward passes that use it: tests/layers/test_second_order.py."""

from __future__ import annotations

import pytest
import torch

from rnnreg.kernels.refuse_twice import backward_once, refusing_twice


class _Square(torch.autograd.Function):
    """x ** 2 with a backward written by hand through backward_once."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        return backward_once(lambda c, g: (2 * c.saved_tensors[0] * g,), ctx, grad, message="twice: no")


class _Ctx:
    saved_tensors = (None, 3)


def test_outside_grad_mode_the_gradients_are_returned_as_they_are():
    grads = (torch.ones(2), None)
    with torch.no_grad():
        assert refusing_twice(grads, _Ctx(), (None,), "m") is grads
    assert refusing_twice(grads, _Ctx(), (torch.ones(2),), "m") is grads  # no anchor needs grad


def test_first_order_values_are_unchanged_and_a_second_backward_raises():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    (plain,) = torch.autograd.grad(_Square.apply(x).sum(), x)
    (graphed,) = torch.autograd.grad(_Square.apply(x).sum(), x, create_graph=True)
    assert torch.equal(plain, torch.tensor([2.0, -4.0])) and torch.equal(graphed.detach(), plain)
    with pytest.raises(RuntimeError, match="twice: no"):
        graphed.sum().backward()


def test_none_gradients_and_non_tensor_anchors_pass_through_the_refusal():
    x = torch.ones(2, requires_grad=True)
    ctx = type("Ctx", (), {"saved_tensors": (x, None)})()
    out = refusing_twice((x * 2, None), ctx, (None, 1.5), "m")
    assert out[1] is None and out[0].requires_grad and torch.equal(out[0].detach(), torch.full((2,), 2.0))
    with pytest.raises(RuntimeError, match="m"):
        out[0].sum().backward()
