"""Weight noise's Gaussian draws (regularizers/masks.normal_noise): the counter-based generator
(csrc/noise.cpp) against its written-out spec, its distribution, and its fallback.

Statistical bounds are ~5 standard deviations (or a 1e-6 Kolmogorov-Smirnov level); the tests seed
torch or pass the op its seed, so they are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.kernels import fast
from rnnreg.regularizers.masks import normal_noise

from helpers import counter_hash_bits

needs_fast = pytest.mark.skipif(not fast.fast_available(), reason="C++ extension unavailable")
DTYPES = [torch.float32, torch.float64]
PAIRS = 64  # csrc/noise.cpp's kPairs: a chunk holds 64 cos outputs, then the 64 sin outputs
GOLDEN = 0x9E3779B97F4A7C15


def _ops():
    return torch.ops.rnnreg_fast


def spec_noise(seed: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """csrc/noise.cpp written out: pair j's uniforms from the two hash streams (seed, seed + golden),
    both Box-Muller outputs in float64, laid out cos-block then sin-block per chunk of 2 * 64."""
    pairs = (n + 2 * PAIRS - 1) // (2 * PAIRS) * PAIRS
    a = counter_hash_bits(seed, pairs)
    b = counter_hash_bits((seed + GOLDEN) & ((1 << 64) - 1), pairs)
    if dtype == torch.float32:  # 24-bit uniforms, u1 in (0, 1]
        u1, u2 = ((a >> 8) + 1).double() * 2.0 ** -24, (b >> 8).double() * 2.0 ** -24
    else:
        u1, u2 = (a.double() + 1.0) * 2.0 ** -32, b.double() * 2.0 ** -32
    r = torch.sqrt(-2.0 * torch.log(u1))
    cos, sin = (r * torch.cos(2 * math.pi * u2)).view(-1, PAIRS), (r * torch.sin(2 * math.pi * u2)).view(-1, PAIRS)
    return torch.cat([cos, sin], dim=1).flatten()[:n]  # (chunks, 128) -> the element order


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_the_written_out_spec(dtype):
    """Every element, for a length that ends in a partial chunk: the vector code computes the
    documented transform (float32: polynomial log / sin / cos, so to ~1e-6)."""
    seed, n = -987654321987, 3 * 2 * PAIRS + 37
    got = _ops().normal_noise([n], 1.0, seed, dtype)
    tol = {"rtol": 2e-6, "atol": 2e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(got.double(), spec_noise(seed, n, dtype), **tol)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_is_standard_normal(dtype):
    n = 1 << 22
    z = _ops().normal_noise([n], 1.0, 2024, dtype).double()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1.0) < 5 * math.sqrt(2.0 / n)
    assert abs(float((z ** 3).mean())) < 5 * math.sqrt(15.0 / n)          # skewness 0
    assert abs(float((z ** 4).mean()) - 3.0) < 5 * math.sqrt(96.0 / n)     # kurtosis 3
    # Kolmogorov-Smirnov: the largest gap between the empirical and the normal CDF.
    s = torch.sort(z).values
    cdf = _normal_cdf(s)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    ks = float(torch.maximum(i / n - cdf, cdf - (i - 1) / n).max())
    assert ks < 2.69 / math.sqrt(n), ks  # a 1e-6 level


@needs_fast
def test_no_correlation():
    n = 1 << 22
    z = _ops().normal_noise([n], 1.0, 7, torch.float32).double()
    bound = 5 / math.sqrt(n // 2)
    for lag in (1, 2, 63, PAIRS, 2 * PAIRS, 1000):  # PAIRS: each element's Box-Muller partner
        assert abs(float((z[:-lag] * z[lag:]).mean())) < bound, lag
    # The partners are independent, not merely uncorrelated: their squares are uncorrelated too.
    chunks = z.view(-1, 2, PAIRS)
    c2, s2 = chunks[:, 0] ** 2 - 1, chunks[:, 1] ** 2 - 1
    assert abs(float((c2 * s2).mean())) < 5 * 2 / math.sqrt(n // 2)
    other = _ops().normal_noise([n], 1.0, 8, torch.float32).double()
    assert abs(float((z * other).mean())) < 5 / math.sqrt(n)


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_pure_function_of_seed_and_index(dtype):
    """The same for any thread count, and a short draw is the prefix of a long one (partial chunks
    and the vector body agree)."""
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out.append(_ops().normal_noise([2600, 650], 0.5, 99, dtype))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out[0], out[1])
    big = _ops().normal_noise([100_003], 1.0, 5, dtype)
    for n in (1, 63, 64, 65, 128, 129, 1000, 40_000):
        assert torch.equal(_ops().normal_noise([n], 1.0, 5, dtype), big[:n])


@needs_fast
@pytest.mark.parametrize("dtype", DTYPES)
def test_seeded_by_torch_one_draw_per_call(dtype):
    like = torch.zeros(1, dtype=dtype)
    torch.manual_seed(3)
    a = normal_noise((300, 200), 0.1, like)
    after = torch.rand(4)
    b = normal_noise((300, 200), 0.1, like)
    torch.manual_seed(3)
    assert torch.equal(normal_noise((3,), 0.1, like), a.flatten()[:3])
    assert torch.equal(torch.rand(4), after)  # one generator draw, whatever the size
    assert not torch.equal(a, b)
    assert a.dtype == dtype and a.shape == (300, 200)


@needs_fast
def test_scaled_by_std():
    like = torch.zeros(1)
    torch.manual_seed(0)
    unit = normal_noise((1000, 1000), 1.0, like)
    torch.manual_seed(0)
    assert torch.allclose(normal_noise((1000, 1000), 0.075, like), 0.075 * unit, rtol=1e-6, atol=0)
    assert torch.equal(normal_noise((10, 10), 0.0, like), torch.zeros(10, 10))
    with pytest.raises(RuntimeError, match="std must be finite"):
        _ops().normal_noise([4], float("nan"), 1, torch.float32)


def test_other_dtypes_use_torch_randn():
    """bf16 (and any device but the CPU) takes the fallback: torch.randn times std."""
    like = torch.zeros(1, dtype=torch.bfloat16)
    torch.manual_seed(1)
    got = normal_noise((500, 400), 0.5, like)
    torch.manual_seed(1)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, torch.randn(500, 400, dtype=torch.bfloat16) * 0.5)
