"""The penalty terms the loop and the benchmark add: each equals its penalties function, is zero
when off, skips padding, and compares the norm-stabilizer's first step with the incoming state."""

from __future__ import annotations

import pytest
import torch

from rnnreg import penalties
from rnnreg.config import PenaltyConfig
from rnnreg.models.outputs import SequenceOutput
from rnnreg.training.penalty_terms import PenaltyError, penalty_terms


def output(cells=False):
    gen = torch.Generator().manual_seed(0)
    raw = [torch.randn(5, 3, 4, generator=gen) for _ in range(2)]       # (T, B, H) per layer
    dropped = [h * 0.5 for h in raw]
    return SequenceOutput(torch.zeros(3, 2), raw, dropped, [h + 1 for h in raw] if cells else None)


def test_off_means_exactly_zero():
    terms = penalty_terms(PenaltyConfig(), output(), [torch.ones(2, requires_grad=True)], like=torch.zeros(()))
    assert terms.record() == {"ar": 0.0, "tar": 0.0, "norm_stabilizer": 0.0, "weight": 0.0}


def test_each_term_is_its_penalty_function_on_the_right_sequence():
    out, weights = output(), [torch.full((2,), 3.0)]
    pen = PenaltyConfig(ar=2.0, tar=1.5, norm_stabilizer=0.5, l1=0.1, l2=0.2)
    terms = penalty_terms(pen, out, weights, like=torch.zeros(()))
    assert terms.ar == penalties.ar(out.dropped[-1], 2.0)               # AR: the dropped output
    assert terms.tar == penalties.tar(out.raw[-1], 1.5)                 # TAR: the raw output
    assert terms.norm_stabilizer == sum(penalties.norm_stabilizer(h, 0.5) for h in out.raw)
    assert terms.weight == penalties.elastic_net(weights, 0.1, 0.2)


def test_lengths_and_the_incoming_state_reach_the_penalties():
    out, lengths = output(), torch.tensor([5, 2, 3])
    h0 = [(torch.ones(1, 3, 4), torch.zeros(1, 3, 4)) for _ in range(2)]  # per layer (h, c), (1, B, H)
    pen = PenaltyConfig(ar=1.0, norm_stabilizer=1.0, norm_stabilizer_layers=(1,))
    terms = penalty_terms(pen, out, [], like=torch.zeros(()), lengths=lengths, incoming=h0)
    assert terms.ar == penalties.ar(out.dropped[-1], 1.0, lengths)
    assert terms.norm_stabilizer == penalties.norm_stabilizer(out.raw[1], 1.0, h0[1][0][0], lengths=lengths)
    assert terms.norm_stabilizer != penalties.norm_stabilizer(out.raw[1], 1.0, lengths=lengths)


def test_cells_are_penalised_when_asked_and_their_absence_is_an_error():
    pen = PenaltyConfig(norm_stabilizer=1.0, norm_stabilizer_on="cell")
    out = output(cells=True)
    terms = penalty_terms(pen, out, [], like=torch.zeros(()))
    assert terms.norm_stabilizer == sum(penalties.norm_stabilizer(c, 1.0) for c in out.cells)
    with pytest.raises(PenaltyError, match="returns its cells"):
        penalty_terms(pen, output(), [], like=torch.zeros(()))
