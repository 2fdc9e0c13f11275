"""Levenshtein distance and the label error rate (percent, micro-averaged over reference labels)."""

from __future__ import annotations

import itertools

import pytest

from rnnreg.decoding import edit_distance, label_error_rate


@pytest.mark.parametrize("a, b, expected", [
    ("kitten", "sitting", 3),      # k->s, e->i, +g (the textbook example)
    ("flaw", "lawn", 2),           # -f, +n
    ("", "abc", 3),
    ("abc", "", 3),
    ("abc", "abc", 0),
    ([1, 1, 2], [1, 2], 1),        # a repeated label deleted
    ([1, 2, 3], [3, 2, 1], 2),     # two substitutions, not a reversal operation
])
def test_hand_worked_distances(a, b, expected):
    assert edit_distance(a, b) == expected
    assert edit_distance(b, a) == expected


def _brute(a: tuple, b: tuple) -> int:
    """The distance by the recursive definition (independent of the row-wise programme)."""
    if not a or not b:
        return len(a) + len(b)
    return min(_brute(a[1:], b) + 1, _brute(a, b[1:]) + 1, _brute(a[1:], b[1:]) + (a[0] != b[0]))


def test_matches_recursive_definition_and_triangle_inequality():
    words = [w for n in range(4) for w in itertools.product((0, 1, 2), repeat=n)][::3]
    for a, b in itertools.product(words, repeat=2):
        assert edit_distance(a, b) == _brute(a, b)
    for a, b, c in itertools.product(words[:12], repeat=3):
        assert edit_distance(a, c) <= edit_distance(a, b) + edit_distance(b, c)


def test_label_error_rate_is_a_micro_average_in_percent():
    refs = [[1, 2, 3, 4], [5]]
    hyps = [[1, 2, 3, 4], [6]]
    # 1 edit over 5 reference labels = 20 %, not the mean of per-sequence rates (0 % and 100 %).
    assert label_error_rate(hyps, refs) == pytest.approx(20.0)
    assert label_error_rate(refs, refs) == 0.0
    # Insertions count, so the rate can exceed 100 %.
    assert label_error_rate([[1, 1, 1]], [[2]]) == pytest.approx(300.0)


def test_label_error_rate_checks_its_arguments():
    with pytest.raises(ValueError, match="pair up"):
        label_error_rate([[1]], [[1], [2]])
    with pytest.raises(ValueError, match="references"):
        label_error_rate([[1]], [[]])
