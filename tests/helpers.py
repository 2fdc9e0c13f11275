"""Shared test utilities: comparing a rnnreg layer with its torch.nn twin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The shared benchmark data: ``$RNNREG_SHARED_DATA``, ``<repo>/../shared/data`` or /work."""
    for candidate in (os.environ.get("RNNREG_SHARED_DATA"), REPO.parent / "shared" / "data",
                      "/work/shared/data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    pytest.skip("shared data folder not found; set RNNREG_SHARED_DATA")


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def run(layer, x, hx=None, **kw):
    """Forward + backward with a fixed random upstream gradient; returns outputs, grads, input grad."""
    layer.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    out, hidden = layer(x, hx, **kw)[:2]
    states = hidden if isinstance(hidden, tuple) else (hidden,)
    gen = torch.Generator().manual_seed(123)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (out, *states))
    loss.backward()
    return (out.detach(), *[s.detach() for s in states]), grads(layer), x.grad.clone()


def assert_same(a, b, atol):
    (outs_a, g_a, gx_a), (outs_b, g_b, gx_b) = a, b
    for u, v in zip(outs_a, outs_b):
        torch.testing.assert_close(u, v, atol=atol, rtol=atol)
    assert g_a.keys() == g_b.keys()
    for k in g_a:
        torch.testing.assert_close(g_a[k], g_b[k], atol=atol, rtol=atol, msg=lambda m: f"{k}: {m}")
    torch.testing.assert_close(gx_a, gx_b, atol=atol, rtol=atol)


def counter_hash_bits(seed: int, n: int) -> torch.Tensor:
    """csrc/counter_hash.h's bits for indices 0..n-1 under ``seed``, written out in int64 arithmetic:
    the spec the vector code of the masks and the noise is checked against."""
    m32, m64 = 0xFFFFFFFF, (1 << 64) - 1
    z = (seed + 0x9E3779B97F4A7C15) & m64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m64
    z ^= z >> 31
    k0, k1 = z & m32, z >> 32

    def mul(x, c):  # (x * c) mod 2^32 without overflowing int64
        return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & m32

    def mix(x):
        x = mul(x ^ (x >> 16), 0x7FEB352D)
        x = mul(x ^ (x >> 15), 0x846CA68B)
        return x ^ (x >> 16)

    return mix(mix(torch.arange(n, dtype=torch.int64) ^ k0) ^ k1)
