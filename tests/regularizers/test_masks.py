"""The counter-based mask generator (csrc/masks.cpp) behind regularizers/masks.py, and its fallback.

Every statistical bound is ~5 standard deviations; the tests seed torch, so they are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.kernels import fast, fast_eager
from rnnreg.regularizers.masks import apply_dropout, bernoulli_keep, dropout_mask, keep_mask

from helpers import counter_hash_bits

needs_fast = pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")
DTYPES = [torch.float32, torch.float64]
N_ROWS, N_COLS = 2000, 2000  # 4M elements


@pytest.fixture
def threads():
    """Restore torch's thread count after a test changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def sigmas(n: int) -> float:
    return 5.0 / math.sqrt(n)  # 5 standard deviations of a correlation of n independent pairs


def check_rate(mask: torch.Tensor, p_keep: float) -> None:
    n = mask.numel()
    kept = float((mask != 0).double().mean())
    assert abs(kept - p_keep) <= 5.0 * math.sqrt(p_keep * (1.0 - p_keep) / n), (kept, p_keep)


# ------------------------------------------------------------------------------------------------
# Distribution


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_rate_and_scale(p, dtype):
    torch.manual_seed(0)
    like = torch.zeros(1, dtype=dtype)
    mask = dropout_mask((N_ROWS, N_COLS), p, like)
    assert mask.dtype == dtype and mask.shape == (N_ROWS, N_COLS)
    scale = torch.ones((), dtype=dtype).div_(1.0 - p)  # the fallback's value, bit for bit
    assert bool(((mask == 0) | (mask == scale)).all())
    check_rate(mask, 1.0 - p)
    assert abs(float(mask.double().mean()) - 1.0) < 5.0 * math.sqrt(p / (1 - p) / mask.numel())


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_rate(p, dtype):
    torch.manual_seed(1)
    like = torch.zeros(1, dtype=dtype)
    mask = keep_mask((N_ROWS, N_COLS), p, like)
    assert mask.dtype == dtype and bool(((mask == 0) | (mask == 1)).all())
    check_rate(mask, p)
    check_rate(bernoulli_keep(like.new_full((N_ROWS, N_COLS), p)), p)


@needs_fast
def test_no_correlation():
    torch.manual_seed(2)
    like = torch.zeros(1)
    a = dropout_mask((N_ROWS, N_COLS), 0.5, like)
    b = dropout_mask((N_ROWS, N_COLS), 0.5, like)  # the next call
    flat = a.flatten()
    for lag in (1, 2, 3, 8, 64, 1000):  # neighbours in memory
        assert abs(corr(flat[:-lag], flat[lag:])) < sigmas(flat.numel() - lag), lag
    assert abs(corr(a[:-1], a[1:])) < sigmas(a[1:].numel())  # consecutive rows
    assert abs(corr(a[:, :-1], a[:, 1:])) < sigmas(a[:, 1:].numel())  # consecutive columns
    assert abs(corr(a, b)) < sigmas(a.numel())  # consecutive calls
    # Seeds 0 and 1 (the op's seed is whitened before use), and a scaled index pattern.
    ops = torch.ops.rnnreg_fast
    s0 = ops.dropout_mask([N_ROWS * N_COLS], 0.5, 0, torch.float32)
    s1 = ops.dropout_mask([N_ROWS * N_COLS], 0.5, 1, torch.float32)
    assert abs(corr(s0, s1)) < sigmas(s0.numel())
    assert abs(corr(s0[::2], s0[1::2])) < sigmas(s0.numel() // 2)


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_bits_are_balanced(dtype):
    """Thresholds at dyadic probabilities read single hash bits: each must be ~fair."""
    ops = torch.ops.rnnreg_fast
    n = 1 << 22
    for k in range(1, 9):
        prob = 1.0 - 2.0 ** -k
        check_rate(ops.keep_mask_const([n], prob, 12345, dtype), prob)


# ------------------------------------------------------------------------------------------------
# Reproducibility and determinism


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_seeded_and_fresh(dtype):
    like = torch.zeros(1, dtype=dtype)
    prob = torch.rand(50, 40, dtype=dtype)
    torch.manual_seed(7)
    a = (dropout_mask((50, 40), 0.3, like), keep_mask((50, 40), 0.3, like), bernoulli_keep(prob))
    c = (dropout_mask((50, 40), 0.3, like), keep_mask((50, 40), 0.3, like), bernoulli_keep(prob))
    torch.manual_seed(7)
    b = (dropout_mask((50, 40), 0.3, like), keep_mask((50, 40), 0.3, like), bernoulli_keep(prob))
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y)
        assert not torch.equal(x, z)


@needs_fast
def test_one_generator_draw_per_mask():
    """Masks advance torch's generator by one draw, whatever their size."""
    like = torch.zeros(1)
    torch.manual_seed(3)
    dropout_mask((1000, 1000), 0.5, like)
    after_mask = torch.rand(4)
    torch.manual_seed(3)
    dropout_mask((3,), 0.5, like)
    assert torch.equal(torch.rand(4), after_mask)


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_same_for_any_thread_count(dtype, threads):
    ops = torch.ops.rnnreg_fast
    prob = torch.rand(35, 20, 650, dtype=dtype)
    out = []
    for n in (1, 2):
        torch.set_num_threads(n)
        out.append((ops.dropout_mask([2600, 650], 0.4, 99, dtype),
                    ops.keep_mask_const([35, 20, 650], 0.2, 99, dtype),
                    ops.keep_mask(prob, 99)))
    for x, y in zip(*out):
        assert torch.equal(x, y)
    # A pure function of (seed, index): a small mask is the prefix of a large one.
    big = ops.dropout_mask([100_003], 0.4, 5, dtype)
    for n in (1, 7, 8, 9, 1000, 40_000):  # vector body and scalar tails
        assert torch.equal(ops.dropout_mask([n], 0.4, 5, dtype), big[:n])


@needs_fast
def test_matches_the_documented_hash():
    seed, n = -1234567890123, 1003
    bits = counter_hash_bits(seed, n)
    ops = torch.ops.rnnreg_fast
    # float64: u = bits * 2^-32; float32: u = (bits >> 8) * 2^-24; keep iff u < prob.
    prob64 = torch.rand(n, dtype=torch.float64)
    want64 = (bits.double() * 2.0 ** -32 < prob64).double()
    assert torch.equal(ops.keep_mask(prob64, seed), want64)
    prob32 = prob64.float()
    want32 = ((bits >> 8).float() * 2.0 ** -24 < prob32).float()
    assert torch.equal(ops.keep_mask(prob32, seed), want32)
    for dtype, want in ((torch.float64, bits.double() * 2.0 ** -32 >= 0.3),
                        (torch.float32, (bits >> 8).float() * 2.0 ** -24 >= torch.tensor(0.3))):
        got = ops.dropout_mask([n], 0.3, seed, dtype)
        assert torch.equal(got != 0, want)


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_and_tensor_prob_agree(dtype):
    """keep_mask(shape, p) is bernoulli_keep(full(shape, p)), and dropout is its complement."""
    ops = torch.ops.rnnreg_fast
    for p in (0.0, 1e-9, 0.1, 1 / 3, 0.5, 0.999999):
        const = ops.keep_mask_const([5000], p, 11, dtype)
        assert torch.equal(const, ops.keep_mask(torch.full((5000,), p, dtype=dtype), 11))
        assert torch.equal(ops.dropout_mask([5000], p, 11, dtype) != 0, const == 0)


# ------------------------------------------------------------------------------------------------
# Shapes and per-element probabilities


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (3, 0, 5), (1,), (), (1, 1, 1)])
def test_small_and_empty_shapes(shape, dtype):
    like = torch.zeros(1, dtype=dtype)
    for mask in (dropout_mask(shape, 0.5, like), keep_mask(shape, 0.5, like),
                 bernoulli_keep(torch.full(shape, 0.5, dtype=dtype))):
        assert mask.shape == torch.Size(shape) and mask.dtype == dtype
    assert bool((keep_mask(shape, 0.0, like) == 0).all())
    assert bool((dropout_mask(shape, 0.0, like) == 1).all())


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_keep_with_probability_tensor(dtype):
    torch.manual_seed(4)
    n = 1 << 20
    assert bool((bernoulli_keep(torch.zeros(n, dtype=dtype)) == 0).all())
    assert bool((bernoulli_keep(torch.ones(n, dtype=dtype)) == 1).all())
    probs = (0.0, 0.05, 0.5, 0.95, 1.0)
    chosen = torch.tensor(probs, dtype=dtype).repeat_interleave(n)
    chosen = chosen[torch.randperm(chosen.numel())]  # mixed, shuffled
    mask = bernoulli_keep(chosen.view(-1, 1024)).flatten()
    for p in probs:
        check_rate(mask[chosen == p], p)
    # Broadcast (expanded) and grad-requiring probabilities, as surprisal zoneout passes them.
    per_step = torch.rand(35, 20, 1, dtype=dtype, requires_grad=True)
    keep = bernoulli_keep(per_step.expand(35, 20, 650))
    assert keep.shape == (35, 20, 650) and not keep.requires_grad
    # Rows with a high keep probability keep more.
    rows = keep.mean(-1)
    assert corr(rows, per_step.detach().squeeze(-1)) > 0.9


# ------------------------------------------------------------------------------------------------
# apply_dropout: x times the mask, in one pass on the fast path


def _x(shape, dtype, layout):
    x = torch.randn(*shape, dtype=dtype)
    return x.t().contiguous().t() if layout == "transposed" else x  # a column-major view


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,layout", [((2600, 65), "plain"), ((65, 2600), "transposed"),
                                          ((3, 4, 5), "plain"), ((0, 3), "plain")])
@pytest.mark.parametrize("p", [0.0, 0.5, 0.9])
def test_apply_dropout_is_x_times_the_mask(dtype, shape, layout, p):
    """The same values and gradient as multiplying by dropout_mask, for the same generator
    state: the fast path's bits, the fallback's, or those of a dtype neither serves."""
    x = _x(shape, dtype, layout).requires_grad_()
    up = torch.randn(shape, dtype=dtype)
    torch.manual_seed(3)
    out = apply_dropout(x, p)
    (grad,) = torch.autograd.grad(out, x, up)
    torch.manual_seed(3)
    mask = dropout_mask(shape, p, x)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(out, x * mask)
    assert torch.equal(grad, up * mask)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "fallback"])
def test_apply_dropout_second_order_gradients(fast_path, monkeypatch):
    if not fast_path:
        monkeypatch.setattr(fast, "fast_available", lambda: False)
    x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)

    def dropped(t):  # the same mask at every call of gradcheck
        torch.manual_seed(11)
        return apply_dropout(t, 0.4) ** 2

    assert torch.autograd.gradcheck(dropped, (x,))
    assert torch.autograd.gradgradcheck(dropped, (x,))


def test_apply_dropout_under_torch_func_and_forward_mode():
    """No tangent or vmap rule on the one-pass route: torch.func and forward-mode AD get the same
    mask multiplied in by torch."""
    x = torch.randn(40, 30)
    torch.manual_seed(2)
    mask = dropout_mask(x.shape, 0.5, x)

    def f(t):
        torch.manual_seed(2)
        return (apply_dropout(t, 0.5) * 3.0).sum()

    assert torch.equal(torch.func.grad(f)(x), mask * 3.0)
    tangent = torch.randn_like(x)
    with torch.autograd.forward_ad.dual_level():
        torch.manual_seed(2)
        dual = apply_dropout(torch.autograd.forward_ad.make_dual(x, tangent), 0.5)
        assert torch.equal(torch.autograd.forward_ad.unpack_dual(dual).tangent, tangent * mask)


@needs_fast
def test_apply_dropout_registered_op_gradients():
    """The registered op (what a compiler or tracer records) against the eager route: the same
    gradient, and a second backward through it exact (the op is linear in x)."""
    x = torch.randn(20, 30, dtype=torch.float64, requires_grad=True)
    seed = torch.tensor([123], dtype=torch.int64)
    out = torch.ops.rnnreg.dropout_apply(x, seed, 0.4)
    eager = fast_eager.DropoutApply.apply(x, 0.4, 123)
    assert torch.equal(out, eager)
    up = torch.randn_like(x)
    (g_op,) = torch.autograd.grad(out, x, up, create_graph=True)
    (g_eager,) = torch.autograd.grad(eager, x, up)
    assert torch.equal(g_op, g_eager)
    assert torch.autograd.gradgradcheck(lambda t: torch.ops.rnnreg.dropout_apply(t, seed, 0.4) ** 2, (x,))


def test_apply_dropout_in_half_precision_takes_the_mask():
    x = torch.randn(100, 100, dtype=torch.bfloat16)
    torch.manual_seed(4)
    out = apply_dropout(x, 0.3)
    torch.manual_seed(4)
    assert torch.equal(out, x * dropout_mask(x.shape, 0.3, x))


# ------------------------------------------------------------------------------------------------
# Fallback (torch.rand): same semantics and distribution


@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_same_distribution(dtype, monkeypatch):
    monkeypatch.setattr(fast, "fast_available", lambda: False)
    like = torch.zeros(1, dtype=dtype)
    torch.manual_seed(6)
    mask = dropout_mask((1000, 1000), 0.3, like)
    torch.manual_seed(6)
    assert torch.equal(mask, (torch.rand(1000, 1000, dtype=dtype) >= 0.3).to(dtype).div_(0.7))
    check_rate(mask, 0.7)
    assert set(mask.unique().tolist()) == {0.0, float(torch.ones((), dtype=dtype).div_(0.7))}
    check_rate(keep_mask((1000, 1000), 0.2, like), 0.2)
    prob = torch.tensor([0.0, 1.0], dtype=dtype).repeat_interleave(500)
    assert torch.equal(bernoulli_keep(prob), prob)
    # Devices / dtypes the extension does not serve always take this path.
    monkeypatch.undo()
    half = dropout_mask((1000, 1000), 0.3, torch.zeros(1, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16
    check_rate(half, 0.7)
