"""CTC decoding: best path on hand-made frames, prefix beam search against brute force over all
paths, and the repeated-label case that needs a blank (a classic prefix-search bug)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rnnreg.decoding import collapse, ctc_greedy_decode, ctc_prefix_beam_search, prefix_beam_search


def frames(rows: list[list[float]]) -> torch.Tensor:
    """(T, C) probabilities -> (T, 1, C) log-probabilities."""
    return torch.tensor(rows, dtype=torch.float64).log().unsqueeze(1)  # (T, C) -> (T, 1, C)


def brute_force(log_probs: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """p(labelling) for every labelling, summing exp(path score) over all C^T paths."""
    steps, classes = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=steps):
        score = math.exp(sum(float(log_probs[t, c]) for t, c in enumerate(path)))
        key = tuple(collapse(list(path), blank))
        totals[key] = totals.get(key, 0.0) + score
    return totals


def labelling_log_prob(log_probs: torch.Tensor, labels: list[int]) -> float:
    """log p(labels | x) from torch's CTC forward algorithm, an independent implementation."""
    target = torch.tensor([labels], dtype=torch.long)
    nll = F.ctc_loss(log_probs.unsqueeze(1), target, torch.tensor([log_probs.shape[0]]),
                     torch.tensor([len(labels)]), reduction="sum")  # (T, C) -> (T, 1, C)
    return -float(nll)


def test_collapse_merges_runs_then_drops_blanks():
    assert collapse([1, 1, 0, 1, 2, 2, 0, 0, 3]) == [1, 1, 2, 3]
    assert collapse([0, 0, 0]) == []
    assert collapse([2, 2, 2], blank=2) == []


def test_greedy_on_hand_made_frames():
    lp = frames([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.1, 0.6, 0.3], [0.1, 0.1, 0.8]])
    assert ctc_greedy_decode(lp, torch.tensor([5])) == [[1, 1, 2]]
    # Only the first 2 frames are valid: "1 1" collapses to one label.
    assert ctc_greedy_decode(lp, torch.tensor([2])) == [[1]]


def test_greedy_batch_respects_lengths_and_blank_index():
    lp = torch.log_softmax(torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(0)), -1)
    lengths = torch.tensor([6, 3, 1])
    out = ctc_greedy_decode(lp, lengths, blank=3)
    for b, n in enumerate(lengths.tolist()):
        assert out[b] == collapse(lp[:n, b].argmax(-1).tolist(), blank=3)


def test_repeated_label_needs_a_blank_between():
    a_a = frames([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05]])
    a_blank_a = frames([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    assert ctc_greedy_decode(a_a, torch.tensor([2])) == [[1]]
    assert ctc_prefix_beam_search(a_a, torch.tensor([2]), beam_size=4) == [[1]]
    assert ctc_greedy_decode(a_blank_a, torch.tensor([3])) == [[1, 1]]
    assert ctc_prefix_beam_search(a_blank_a, torch.tensor([3]), beam_size=4) == [[1, 1]]


def test_two_frames_cannot_hold_a_repeated_label():
    # With 2 frames "a a" is impossible (it needs a blank between), so its probability must be 0:
    # a search that lets p_label extend prefix "a" by "a" gives it 0.36 here.
    beam = {tuple(k): v for k, v in prefix_beam_search(frames([[0.4, 0.6]] * 2)[:, 0], 10)}
    assert (1, 1) not in beam
    assert math.exp(beam[(1,)]) == pytest.approx(0.84)  # aa, a_, _a: 0.36 + 0.24 + 0.24
    assert math.exp(beam[()]) == pytest.approx(0.16)


@pytest.mark.parametrize("seed", range(6))
def test_unpruned_prefix_search_is_exact(seed):
    gen = torch.Generator().manual_seed(seed)
    steps, classes = 5, 3
    lp = torch.log_softmax(2.0 * torch.randn(steps, classes, generator=gen, dtype=torch.float64), -1)
    exact = brute_force(lp)
    beam = prefix_beam_search(lp, beam_size=10_000)
    # Every labelling with nonzero probability survives, with its exact probability.
    assert {tuple(k) for k, _ in beam} == set(exact)
    for labels, logp in beam:
        assert math.exp(logp) == pytest.approx(exact[tuple(labels)], rel=1e-9)
        assert logp == pytest.approx(labelling_log_prob(lp, labels), abs=1e-6)
    best = max(exact, key=exact.get)
    assert ctc_prefix_beam_search(lp.unsqueeze(1), torch.tensor([steps]), beam_size=10_000) == [list(best)]


@pytest.mark.parametrize("seed", range(8))
def test_prefix_search_beats_or_ties_greedy(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    steps, batch, classes = 12, 3, 5
    # Flat-ish frames, where the best path and the best labelling often differ.
    lp = torch.log_softmax(0.7 * torch.randn(steps, batch, classes, generator=gen, dtype=torch.float64), -1)
    lengths = torch.tensor([12, 9, 4])
    greedy = ctc_greedy_decode(lp, lengths)
    beam = ctc_prefix_beam_search(lp, lengths, beam_size=16)
    for b, n in enumerate(lengths.tolist()):
        assert labelling_log_prob(lp[:n, b], beam[b]) >= labelling_log_prob(lp[:n, b], greedy[b]) - 1e-9


def test_beam_one_keeps_a_single_prefix():
    lp = torch.log_softmax(torch.randn(7, 1, 4, generator=torch.Generator().manual_seed(3)), -1)
    assert len(prefix_beam_search(lp[:, 0], beam_size=1)) == 1
    assert len(ctc_prefix_beam_search(lp, torch.tensor([7]), beam_size=1)[0]) <= 7


def test_arguments_are_checked():
    lp = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match="log_probs"):
        ctc_greedy_decode(torch.zeros(3, 4), torch.tensor([3]))
    with pytest.raises(ValueError, match="lengths"):
        ctc_greedy_decode(lp, torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="blank"):
        ctc_greedy_decode(lp, torch.tensor([3, 3]), blank=4)
    with pytest.raises(ValueError, match="beam_size"):
        ctc_prefix_beam_search(lp, torch.tensor([3, 3]), beam_size=0)
