"""kernels/squared_sums.py (AR's and TAR's means with closed-form backward passes) against their
plain-autograd twins: the same values bit for bit in every dtype, the same gradients, second
order included; under forward mode and torch.func the penalties take the autograd forms."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from rnnreg.kernels.autograd_modes import plain_autograd
from rnnreg.kernels.squared_sums import MeanOfSquaredSteps, MeanOfSquares, SecondDifference, second_difference
from rnnreg.penalties import ar, tar

TWINS = {"squares": (MeanOfSquares.apply, lambda h: h.pow(2).mean()),
         "steps": (MeanOfSquaredSteps.apply, lambda h: (h[1:] - h[:-1]).pow(2).mean())}
HALF = [torch.bfloat16, torch.float16]


def _h(T=7, B=3, H=5, dtype=torch.float64, seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(T, B, H, generator=gen, dtype=torch.float64) * scale + 0.25 * scale).to(dtype)


@pytest.mark.parametrize("kind", TWINS)
@pytest.mark.parametrize("T", [2, 3, 35])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_value_and_gradient_match_autograd(kind, T, dtype):
    fast, twin = TWINS[kind]
    h = _h(T=T, dtype=dtype).requires_grad_()
    up = torch.tensor(1.7, dtype=dtype)
    value, (grad,) = fast(h), torch.autograd.grad(fast(h) * up, h)
    value_r, (grad_r,) = twin(h), torch.autograd.grad(twin(h) * up, h)
    assert torch.equal(value, value_r)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(grad, grad_r, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALF], ids=["f32", "f64", "bf16", "f16"])
def test_penalties_keep_the_autograd_forms_values(dtype):
    """ar / tar without lengths give exactly alpha * h.pow(2).mean() and beta * (h[1:] -
    h[:-1]).pow(2).mean(), at AWD-LSTM's output size too, where a half-precision sum before the
    division would round differently (or overflow in fp16). Half precision: of h in float32, as
    the penalties compute it (tests/test_penalties.py)."""
    for shape, scale in (((35, 20, 200), 2.0), ((70, 80, 400), 0.3)):
        h = _h(*shape, dtype=dtype, scale=scale)
        h32 = h.float() if dtype in HALF else h
        assert torch.equal(ar(h, 2.0), 2.0 * h32.pow(2).mean())
        assert torch.equal(tar(h, 1.5), 1.5 * (h32[1:] - h32[:-1]).pow(2).mean())
        assert torch.isfinite(ar(h, 2.0)) and torch.isfinite(tar(h, 1.5))


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "f16"])
def test_half_precision_gradients_stay_close(dtype):
    h = _h(35, 20, 200, dtype=dtype).requires_grad_()
    for fast, twin in TWINS.values():
        (grad,), (grad_r,) = torch.autograd.grad(fast(h), h), torch.autograd.grad(twin(h), h)
        assert grad.dtype == dtype
        torch.testing.assert_close(grad.float(), grad_r.float(), rtol=2e-2, atol=1e-6)


@pytest.mark.parametrize("fn", [MeanOfSquares.apply, MeanOfSquaredSteps.apply, SecondDifference.apply],
                         ids=["squares", "steps", "second_difference"])
@pytest.mark.parametrize("T", [2, 3, 5])
def test_first_and_second_order_gradients(fn, T):
    h = _h(T=T, B=2, H=3).requires_grad_()
    assert torch.autograd.gradcheck(fn, (h,))
    assert torch.autograd.gradgradcheck(fn, (h,))


def test_torch_func_transforms_and_forward_mode():
    """Under torch.func's grad, vmap, jacrev and jacfwd, and forward-mode AD, the penalties take
    the autograd forms (the Functions have no vmap rule or tangent): the same results."""
    h = _h(T=5, B=2, H=3)

    def loss(x):
        return ar(x, 2.0) + tar(x, 1.0)

    def twin(x):
        return 2.0 * x.pow(2).mean() + (x[1:] - x[:-1]).pow(2).mean()

    torch.testing.assert_close(torch.func.grad(loss)(h), torch.func.grad(twin)(h))
    batch = torch.stack([h, 2 * h, h.flip(0)])  # (3, T, B, H)
    torch.testing.assert_close(torch.func.vmap(loss)(batch), torch.func.vmap(twin)(batch))
    torch.testing.assert_close(torch.func.jacrev(torch.func.grad(loss))(h),
                               torch.func.jacrev(torch.func.grad(twin))(h))
    torch.testing.assert_close(torch.func.jacfwd(loss)(h), torch.func.jacfwd(twin)(h))
    with fwAD.dual_level():
        tangent = torch.randn_like(h)
        got = fwAD.unpack_dual(loss(fwAD.make_dual(h, tangent))).tangent
        want = fwAD.unpack_dual(twin(fwAD.make_dual(h, tangent))).tangent
    torch.testing.assert_close(got, want)
    assert plain_autograd()


@pytest.mark.parametrize("T", [2, 3, 6])
def test_second_difference_is_dt_d(T):
    """L = D^T D with D the (T-1, T) first-difference matrix, applied along time."""
    D = torch.zeros(T - 1, T, dtype=torch.float64)
    D[range(T - 1), range(1, T)], D[range(T - 1), range(T - 1)] = 1.0, -1.0
    h = _h(T=T)
    assert torch.allclose(second_difference(h), torch.einsum("st,tbh->sbh", D.T @ D, h), atol=1e-13)


def test_non_contiguous_input():
    """A time-major view of a batch-major tensor, as a batch_first model hands its outputs on."""
    h = _h(B=4, dtype=torch.float32).transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    for fast, twin in TWINS.values():
        assert torch.equal(fast(h), twin(h))
        torch.testing.assert_close(torch.autograd.grad(fast(h), h)[0], torch.autograd.grad(twin(h), h)[0])


def test_compiles_to_the_same_gradients():
    h = _h(dtype=torch.float32).requires_grad_()

    def loss(x):
        return ar(x, 2.0) + tar(x, 1.0)

    got = torch.autograd.grad(torch.compile(loss, fullgraph=True)(h), h)[0]
    torch.testing.assert_close(got, torch.autograd.grad(loss(h), h)[0])
