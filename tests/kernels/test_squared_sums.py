"""kernels/squared_sums.py (AR's and TAR's sums with closed-form backward passes) against their
plain-autograd twins: the same values, the same gradients, second order included."""

from __future__ import annotations

import pytest
import torch

from rnnreg.kernels.squared_sums import (SecondDifference, SumOfSquaredSteps, SumOfSquares,
                                         second_difference)
from rnnreg.penalties import ar, tar

TWINS = {"squares": (SumOfSquares.apply, lambda h: h.pow(2).sum()),
         "steps": (SumOfSquaredSteps.apply, lambda h: (h[1:] - h[:-1]).pow(2).sum())}


def _h(T=7, B=3, H=5, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(T, B, H, generator=gen, dtype=torch.float64) * 2 + 0.5).to(dtype)


@pytest.mark.parametrize("kind", TWINS)
@pytest.mark.parametrize("T", [2, 3, 35])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_value_and_gradient_match_autograd(kind, T, dtype):
    fast, twin = TWINS[kind]
    h = _h(T=T, dtype=dtype).requires_grad_()
    up = torch.tensor(1.7, dtype=dtype)
    value, (grad,) = fast(h), torch.autograd.grad(fast(h) * up, h)
    value_r, (grad_r,) = twin(h), torch.autograd.grad(twin(h) * up, h)
    assert value.dtype == dtype and torch.allclose(value, value_r, rtol=1e-6 if dtype == torch.float32 else 1e-14)
    torch.testing.assert_close(grad, grad_r, rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=1e-6)


@pytest.mark.parametrize("fn", [SumOfSquares.apply, SumOfSquaredSteps.apply, SecondDifference.apply],
                         ids=["squares", "steps", "second_difference"])
@pytest.mark.parametrize("T", [2, 3, 5])
def test_first_and_second_order_gradients(fn, T):
    h = _h(T=T, B=2, H=3).requires_grad_()
    assert torch.autograd.gradcheck(fn, (h,))
    assert torch.autograd.gradgradcheck(fn, (h,))


@pytest.mark.parametrize("T", [2, 3, 6])
def test_second_difference_is_dt_d(T):
    """L = D^T D with D the (T-1, T) first-difference matrix, applied along time."""
    D = torch.zeros(T - 1, T, dtype=torch.float64)
    D[range(T - 1), range(1, T)], D[range(T - 1), range(T - 1)] = 1.0, -1.0
    h = _h(T=T)
    assert torch.allclose(second_difference(h), torch.einsum("st,tbh->sbh", D.T @ D, h), atol=1e-13)


def test_penalties_keep_their_values_and_gradients():
    """ar and tar without lengths (the closed forms) against the masked forms with full lengths
    (the autograd expressions); a non-contiguous (batch-first transposed) input included."""
    h = _h(B=4, dtype=torch.float32).transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    full = torch.full((4,), h.shape[0])
    for fn, weight in ((ar, 2.0), (tar, 1.0)):
        got, want = fn(h, weight), fn(h, weight, full)
        assert torch.equal(got, want)
        torch.testing.assert_close(torch.autograd.grad(got, h)[0], torch.autograd.grad(want, h)[0])


def test_half_precision_keeps_its_dtype():
    h = _h(dtype=torch.bfloat16).requires_grad_()
    for fast, twin in TWINS.values():
        value, (grad,) = fast(h), torch.autograd.grad(fast(h), h)
        value_r, (grad_r,) = twin(h), torch.autograd.grad(twin(h), h)
        assert value.dtype == grad.dtype == torch.bfloat16
        torch.testing.assert_close(value.float(), value_r.float(), rtol=2e-2, atol=0)
        torch.testing.assert_close(grad.float(), grad_r.float(), rtol=2e-2, atol=2e-2)


def test_compiles_to_the_same_gradients():
    h = _h(dtype=torch.float32).requires_grad_()

    def loss(x):
        return ar(x, 2.0) + tar(x, 1.0)

    got = torch.autograd.grad(torch.compile(loss, fullgraph=True)(h), h)[0]
    torch.testing.assert_close(got, torch.autograd.grad(loss(h), h)[0])
