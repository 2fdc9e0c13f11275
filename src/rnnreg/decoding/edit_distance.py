"""Levenshtein distance and the label error rate of Graves et al. (2006).

The label error rate (LER, Graves et al. 2006, "Connectionist temporal classification", sec. 5.1,
eq. 16) is the total edit distance between the hypotheses and the references divided by the total
reference length: a micro-average over labels, not the mean of per-sequence rates. For phone
recognition it is the phone error rate (PER). We report it in percent.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """The fewest insertions, deletions and substitutions that turn ``a`` into ``b`` (Levenshtein
    1966), by the usual dynamic programme over prefixes, one row at a time."""
    if len(a) < len(b):
        a, b = b, a  # the distance is symmetric; keep the row the shorter one
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1,              # delete x
                               current[j - 1] + 1,           # insert y
                               previous[j - 1] + (x != y)))  # substitute (free if equal)
        previous = current
    return previous[-1]


def label_error_rate(hypotheses: Sequence[Sequence[Hashable]],
                     references: Sequence[Sequence[Hashable]]) -> float:
    """100 * (total edit distance) / (total reference labels), in percent (can exceed 100)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses and references must pair up, got {len(hypotheses)} and {len(references)}")
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("references must hold at least one label in total")
    edits = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    return 100.0 * edits / total
