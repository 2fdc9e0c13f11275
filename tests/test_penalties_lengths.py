"""Penalties on padded batches: only real steps count, whatever the padding holds."""

from __future__ import annotations

import pytest
import torch

from rnnreg.penalties import NORM_STABILIZER_COSTS, ar, norm_stabilizer, tar

LENGTHS = torch.tensor([5, 2, 3])


def padded(fill: float) -> torch.Tensor:
    torch.manual_seed(0)
    h = torch.randn(5, 3, 4)  # (T, B, H)
    for b, n in enumerate(LENGTHS.tolist()):
        h[n:, b] = fill
    return h


def per_sequence(fn, h: torch.Tensor, pairs: bool) -> torch.Tensor:
    """The same penalty from each sequence's real steps alone, weighted by its number of terms."""
    values, weights = [], []
    for b, n in enumerate(LENGTHS.tolist()):
        values.append(fn(h[:n, b:b + 1]))
        weights.append(max(n - 1, 0) if pairs else n)
    weights = torch.tensor(weights, dtype=h.dtype)
    return (torch.stack(values) * weights).sum() / weights.sum()


def test_ar_and_tar_ignore_padding():
    for fill in (0.0, 100.0):
        h = padded(fill)
        assert torch.allclose(ar(h, 2.0, LENGTHS), per_sequence(lambda s: ar(s, 2.0), h, False))
        assert torch.allclose(tar(h, 2.0, LENGTHS), per_sequence(lambda s: tar(s, 2.0), h, True))
    full = torch.full((3,), 5)
    h = padded(0.0)
    assert torch.equal(ar(h, 1.0, full), ar(h, 1.0)) and torch.equal(tar(h, 1.0, full), tar(h, 1.0))


@pytest.mark.parametrize("cost", [c for c in NORM_STABILIZER_COSTS if c not in ("target", "endpoints")])
def test_norm_stabilizer_compares_real_steps_only(cost):
    a, b = padded(0.0), padded(7.0)
    with_lengths = norm_stabilizer(a, 1.0, cost=cost, lengths=LENGTHS)
    assert torch.allclose(with_lengths, norm_stabilizer(b, 1.0, cost=cost, lengths=LENGTHS))
    assert torch.allclose(with_lengths, per_sequence(lambda s: norm_stabilizer(s, 1.0, cost=cost), a, True))
    # Without lengths the drop to zero padding after a short sequence is penalised.
    assert norm_stabilizer(a, 1.0, cost=cost) != with_lengths


def test_norm_stabilizer_target_and_endpoints_use_each_sequences_real_steps():
    h = padded(9.0)
    target = norm_stabilizer(h, 1.0, cost="target", target=1.0, lengths=LENGTHS)
    assert torch.allclose(target, per_sequence(lambda s: norm_stabilizer(s, 1.0, cost="target", target=1.0), h, False))
    ends = norm_stabilizer(h, 1.0, cost="endpoints", lengths=LENGTHS)
    alone = torch.stack([norm_stabilizer(h[:n, b:b + 1], 1.0, cost="endpoints")
                         for b, n in enumerate(LENGTHS.tolist())])
    assert torch.allclose(ends, alone.mean())


def test_h0_is_a_real_step_for_every_sequence():
    h, h0 = padded(0.0), torch.randn(3, 4)
    got = norm_stabilizer(h, 1.0, h0, lengths=LENGTHS)
    alone = [norm_stabilizer(h[:n, b:b + 1], 1.0, h0[b:b + 1]) for b, n in enumerate(LENGTHS.tolist())]
    weights = LENGTHS.to(h.dtype)                                  # n pairs each, with h0 in front
    assert torch.allclose(got, (torch.stack(alone) * weights).sum() / weights.sum())


def test_lengths_must_match_the_batch():
    with pytest.raises(ValueError, match="lengths"):
        ar(padded(0.0), 1.0, torch.tensor([1, 2]))
