"""Penalties (penalties.py): every penalty against a value worked out by hand on a tiny tensor, and
on padded batches, where only real steps count whatever the padding holds."""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg import penalties
from rnnreg.penalties import (
    NORM_STABILIZER_COSTS,
    ar,
    elastic_net,
    l1_penalty,
    l2_penalty,
    norm_stabilizer,
    tar,
)

LENGTHS = torch.tensor([5, 2, 3])


def _h() -> torch.Tensor:
    # (T=3, B=1, H=2); L2 norms 5, 5, 10; L1 norms 7, 5, 14.
    return torch.tensor([[[3.0, 4.0]], [[0.0, 5.0]], [[6.0, 8.0]]], dtype=torch.float64)


def _h0() -> torch.Tensor:
    return torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # (B=1, H=2), norm 1


def test_ar() -> None:
    h = torch.tensor([[[3.0, 4.0]], [[0.0, 5.0]]])
    # mean(h^2) = (9 + 16 + 0 + 25) / 4 = 12.5
    assert ar(h, 2.0).item() == pytest.approx(25.0)


def test_tar() -> None:
    h = torch.tensor([[[3.0, 4.0]], [[0.0, 5.0]]])
    # h_1 - h_0 = (-3, 1): mean(9, 1) = 5
    assert tar(h, 2.0).item() == pytest.approx(10.0)
    assert tar(h[:1], 2.0).item() == 0.0


def test_norm_stabilizer_default() -> None:
    # norm diffs 0, 5 -> mean(0, 25) = 12.5
    assert norm_stabilizer(_h(), 2.0).item() == pytest.approx(25.0)
    # with h0: norms 1, 5, 5, 10 -> diffs 4, 0, 5 -> mean(16, 0, 25) = 41/3
    assert norm_stabilizer(_h(), 3.0, h0=_h0()).item() == pytest.approx(41.0)


def test_norm_stabilizer_means_over_batch() -> None:
    # batch 0: norms 5 -> 5; batch 1: norms 1 -> 3; mean(0, 4) = 2
    h = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 5.0], [0.0, 3.0]]])
    assert norm_stabilizer(h, 1.0).item() == pytest.approx(2.0)


def test_norm_stabilizer_delta() -> None:
    # ||(-3, 1)||^2 = 10, ||(6, 3)||^2 = 45 -> mean 27.5
    assert norm_stabilizer(_h(), 2.0, cost="delta").item() == pytest.approx(55.0)
    # plus ||(3, 3)||^2 = 18 from h0 -> 73 / 3
    assert norm_stabilizer(_h(), 3.0, h0=_h0(), cost="delta").item() == pytest.approx(73.0)


def test_norm_stabilizer_relative() -> None:
    # ((5-5)/5)^2 = 0, ((10-5)/5)^2 = 1 -> mean 0.5
    assert norm_stabilizer(_h(), 2.0, cost="relative").item() == pytest.approx(1.0)
    # with h0: ((5-1)/1)^2 = 16 -> mean(16, 0, 1) = 17/3
    assert norm_stabilizer(_h(), 3.0, h0=_h0(), cost="relative").item() == pytest.approx(17.0)
    zero_h0 = torch.zeros(1, 2, dtype=torch.float64)
    assert math.isfinite(norm_stabilizer(_h(), 1.0, h0=zero_h0, cost="relative").item())


def test_norm_stabilizer_l1() -> None:
    # L1 norms 7, 5, 14: diffs -2, 9 -> mean(4, 81) = 42.5
    assert norm_stabilizer(_h(), 2.0, cost="l1").item() == pytest.approx(85.0)
    # with h0 (L1 norm 1): diffs 6, -2, 9 -> mean(36, 4, 81) = 121/3
    assert norm_stabilizer(_h(), 3.0, h0=_h0(), cost="l1").item() == pytest.approx(121.0)


def test_norm_stabilizer_target() -> None:
    # norms 5, 5, 10 against c = 5: mean(0, 0, 25) = 25/3; h0 is not used
    assert norm_stabilizer(_h(), 3.0, cost="target", target=5.0).item() == pytest.approx(25.0)
    got = norm_stabilizer(_h(), 3.0, h0=_h0(), cost="target", target=5.0)
    assert got.item() == pytest.approx(25.0)
    # a single step is enough: (5 - 2)^2 = 9
    assert norm_stabilizer(_h()[:1], 1.0, cost="target", target=2).item() == pytest.approx(9.0)
    with pytest.raises(ValueError, match="requires a target"):
        norm_stabilizer(_h(), 1.0, cost="target")
    with pytest.raises(ValueError, match="only used with cost='target'"):
        norm_stabilizer(_h(), 1.0, target=3.0)
    with pytest.raises(ValueError, match="target"):
        norm_stabilizer(_h(), 1.0, cost="target", target=-1.0)


def test_norm_stabilizer_endpoints() -> None:
    # n_0 = 5 (h[0]), n_T = 10: (5 - 10)^2 = 25
    assert norm_stabilizer(_h(), 2.0, cost="endpoints").item() == pytest.approx(50.0)
    # n_0 = 1 (h0): (1 - 10)^2 = 81
    assert norm_stabilizer(_h(), 2.0, h0=_h0(), cost="endpoints").item() == pytest.approx(162.0)
    # mean over batch: (5 - 5)^2 = 0 and (1 - 3)^2 = 4 -> 2
    h = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 5.0], [0.0, 3.0]]])
    assert norm_stabilizer(h, 1.0, cost="endpoints").item() == pytest.approx(2.0)


def test_norm_stabilizer_short_sequences() -> None:
    h = torch.tensor([[[3.0, 4.0]]], dtype=torch.float64, requires_grad=True)  # T = 1
    for cost in ("norm", "delta", "relative", "l1"):
        out = norm_stabilizer(h, 1.0, cost=cost)
        assert out.item() == 0.0 and out.dtype == torch.float64 and out.dim() == 0
        out.backward()
        assert torch.equal(h.grad, torch.zeros_like(h))
    # with h0 the single step is compared with it: (5 - 1)^2 = 16
    assert norm_stabilizer(h, 2.0, h0=_h0()).item() == pytest.approx(32.0)
    with pytest.raises(ValueError, match="h0 must have shape"):
        norm_stabilizer(h, 1.0, h0=torch.zeros(2, 2))


def test_norm_stabilizer_bad_cost_and_beta() -> None:
    with pytest.raises(ValueError, match="norm, delta, relative, l1, target, endpoints"):
        norm_stabilizer(_h(), 1.0, cost="frobenius")
    with pytest.raises(ValueError, match="beta"):
        norm_stabilizer(_h(), -0.5)


def test_zero_weight_gives_exact_zero() -> None:
    h = torch.tensor([[[math.inf, 1.0]], [[2.0, 3.0]]])
    for value in (ar(h, 0.0), tar(h, 0.0), norm_stabilizer(h, 0.0),
                  l1_penalty([h], 0.0), l2_penalty([h], 0.0), elastic_net([h], 0.0, 0.0)):
        assert isinstance(value, torch.Tensor) and value.item() == 0.0


def test_negative_weights_rejected() -> None:
    h = _h()
    with pytest.raises(ValueError, match="alpha"):
        ar(h, -1.0)
    with pytest.raises(ValueError, match="beta"):
        tar(h, -1.0)
    with pytest.raises(ValueError, match="weight"):
        l1_penalty([h], -1.0)
    with pytest.raises(ValueError, match="weight"):
        l2_penalty([h], -1.0)
    with pytest.raises(ValueError, match="l2"):
        elastic_net([h], 1.0, -1.0)
    with pytest.raises(TypeError, match="alpha"):
        ar(h, "0.1")  # type: ignore[arg-type]


def _params() -> list[torch.Tensor]:
    return [torch.tensor([1.0, -2.0], requires_grad=True),
            torch.tensor([[3.0], [-4.0]], requires_grad=True)]


def test_weight_penalties() -> None:
    # sum |p| = 1 + 2 + 3 + 4 = 10; sum p^2 = 1 + 4 + 9 + 16 = 30 (no factor 1/2)
    assert l1_penalty(_params(), 0.5).item() == pytest.approx(5.0)
    assert l2_penalty(_params(), 0.5).item() == pytest.approx(15.0)
    assert elastic_net(iter(_params()), 0.5, 0.1).item() == pytest.approx(5.0 + 3.0)
    assert l2_penalty([], 1.0).item() == 0.0
    ps = _params()
    l2_penalty(ps, 0.5).backward()
    assert torch.equal(ps[0].grad, torch.tensor([1.0, -2.0]))  # 2 * 0.5 * p


# ---------------------------------------------------------------- padded batches (lengths)

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


HALF = [torch.float16, torch.bfloat16]
PENALTIES = {
    "ar": lambda h: penalties.ar(h, 2.0),
    "tar": lambda h: penalties.tar(h, 1.0),
    **{f"norm_stabilizer-{cost}": (lambda h, cost=cost: penalties.norm_stabilizer(
        h, 50.0, h[0] * 0.5, cost=cost, target=1.0 if cost == "target" else None))
       for cost in penalties.NORM_STABILIZER_COSTS},
    "l1": lambda h: penalties.l1_penalty([h], 1e-3),
    "l2": lambda h: penalties.l2_penalty([h], 1e-3),
    "elastic_net": lambda h: penalties.elastic_net([h], 1e-3, 1e-3),
}


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_half_precision_states_are_penalised_in_float32(name, dtype):
    """States of a float16 model (ReLU / IRNN ones reach hundreds) made every penalty inf when
    it summed their squares in float16, and bf16 rounded it to 8 bits: each penalty now computes
    them in float32, equal to the float32 call on the same values, its gradient in their dtype."""
    torch.manual_seed(0)
    h = (torch.randn(20, 4, 64) * 300).to(dtype).requires_grad_()
    got = PENALTIES[name](h)
    want = PENALTIES[name](h.detach().float())
    assert got.dtype == torch.float32 and torch.isfinite(got)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    got.backward()
    assert h.grad.dtype == dtype and torch.isfinite(h.grad.float()).all()
