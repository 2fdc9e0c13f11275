"""Decoding CTC outputs into label sequences: best path and prefix beam search.

CTC (Graves et al. 2006) gives a distribution over frame-level paths of labels and a blank; the
collapse map B removes repeated labels and then blanks, so "a a _ a" reads "a a" and "a a" reads
"a". Best-path (greedy) decoding collapses the most likely path; prefix beam search (Graves 2012,
"Supervised sequence labelling", sec. 7.5; Hannun et al. 2014, arXiv 1408.2873, Algorithm 1)
approximates the most likely *labelling*, summing over all the paths that collapse to it.

Log-probabilities are time-major, ``(T, B, C)`` with C classes including the blank, as
``torch.nn.functional.ctc_loss`` takes them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NEG_INF = -math.inf
Prefix = tuple[int, ...]


def _check(log_probs: Tensor, lengths: Tensor, blank: int) -> list[int]:
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (T, B, C), got shape {tuple(log_probs.shape)}")
    steps, batch, classes = log_probs.shape
    if not 0 <= blank < classes:
        raise ValueError(f"blank must be in [0, {classes}), got {blank}")
    lens = torch.as_tensor(lengths).reshape(-1).tolist()  # (B,) or scalar -> B ints
    if len(lens) != batch or any(not 0 <= n <= steps for n in lens):
        raise ValueError(f"lengths must be {batch} values in [0, {steps}], got {lens}")
    return [int(n) for n in lens]


def collapse(path: list[int], blank: int = 0) -> list[int]:
    """The CTC collapse map B: merge runs of the same label, then drop blanks."""
    out, previous = [], None
    for label in path:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def ctc_greedy_decode(log_probs: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: the argmax class of every frame, collapsed (Graves et al. 2006, sec. 3.2).

    log_probs (T, B, C); lengths (B,) valid frames per sequence. Returns B label lists.
    """
    lens = _check(log_probs, lengths, blank)
    best = log_probs.argmax(dim=-1).t().tolist()  # (T, B) -> (B, T)
    return [collapse(row[:n], blank) for row, n in zip(best, lens)]


def _add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow, exact for -inf operands."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))


def _step(beam: dict[Prefix, list[float]], frame: list[float], candidates: list[int],
          blank: int) -> dict[Prefix, list[float]]:
    """One frame of prefix search. Each prefix keeps [log p(ends in blank), log p(ends in a label)]."""
    nxt: dict[Prefix, list[float]] = {}

    def grow(prefix: Prefix, which: int, value: float) -> None:
        slot = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
        slot[which] = _add(slot[which], value)

    for prefix, (p_blank, p_label) in beam.items():
        total = _add(p_blank, p_label)
        grow(prefix, 0, total + frame[blank])
        last = prefix[-1] if prefix else None
        if last is not None:
            # Staying on the last label keeps the prefix: only paths that ended in that label.
            grow(prefix, 1, p_label + frame[last])
        for label in candidates:
            if label == last:
                # The known trap: "a" then "a" again is a new label only after a blank between
                # them (Hannun et al. 2014, Alg. 1), so only p_blank extends to prefix + (a,).
                grow(prefix + (label,), 1, p_blank + frame[label])
            else:
                grow(prefix + (label,), 1, total + frame[label])
    # A prefix no path can reach (a repeat straight after its label) is not a hypothesis.
    return {p: s for p, s in nxt.items() if max(s) > NEG_INF}


def prefix_beam_search(log_probs: Tensor, beam_size: int, blank: int = 0) -> list[tuple[list[int], float]]:
    """Prefix beam search over one sequence's frames ``log_probs`` (T, C).

    Keeps the ``beam_size`` most probable prefixes after every frame; a frame extends each prefix
    with its ``beam_size`` most likely labels (all labels when beam_size >= C - 1, which makes the
    search exact when the beam never prunes). Returns the final beam as (labels, log probability
    of the labelling) pairs, most probable first.
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (T, C), got shape {tuple(log_probs.shape)}")
    classes = log_probs.shape[1]
    if not 0 <= blank < classes:
        raise ValueError(f"blank must be in [0, {classes}), got {blank}")
    frames = log_probs.detach().double().cpu()
    order = frames.argsort(dim=1, descending=True).tolist()  # (T, C) classes, best first
    beam: dict[Prefix, list[float]] = {(): [0.0, NEG_INF]}
    for frame, ranked in zip(frames.tolist(), order):
        candidates = [c for c in ranked if c != blank][:beam_size]
        beam = _step(beam, frame, candidates, blank)
        if len(beam) > beam_size:
            kept = sorted(beam.items(), key=lambda item: _add(*item[1]), reverse=True)[:beam_size]
            beam = dict(kept)
    ranked_out = sorted(((list(p), _add(*s)) for p, s in beam.items()), key=lambda x: x[1], reverse=True)
    return ranked_out


def ctc_prefix_beam_search(log_probs: Tensor, lengths: Tensor, beam_size: int,
                           blank: int = 0) -> list[list[int]]:
    """The most probable labelling of each sequence under prefix beam search (see
    :func:`prefix_beam_search`). log_probs (T, B, C); lengths (B,). Returns B label lists."""
    lens = _check(log_probs, lengths, blank)
    out = []
    for b, n in enumerate(lens):
        out.append(prefix_beam_search(log_probs[:n, b], beam_size, blank)[0][0])
    return out
