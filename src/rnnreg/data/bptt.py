r"""Variable-length backpropagation through time (Merity et al. 2017, "Regularizing and Optimizing
LSTM Language Models", sec. 4.1).

With a fixed BPTT length every epoch starts windows at the same offsets, so a token at offset 3
of a window is only ever predicted from 3 tokens of in-window context and never gets a gradient
through a longer history. Drawing each window's length moves the cut points around:

    base    = bptt with probability p, else bptt / 2
    seq_len = max(min_len, int(N(base, std)))       capped at bptt + max_delta

How the windows tile the batched columns (``batchify``: the corpus cut into B streams laid side
by side, N rows; each window's targets are its inputs one row further down)::

          column 0   column 1   ...  column B-1
    row 0  [ w0       w0               w0      ]  \
    row 1  [ w0       w0               w0      ]   } window 0: rows 0 .. 69 in, 1 .. 70 target
     ...                                          /   (seq_len 70 drawn, lr x 70/70)
    row 70 [ w1       w1               w1      ]  \
     ...                                           } window 1: 35 rows (the bptt/2 base drawn,
    row 104[ w1       w1               w1      ]  /   p = 0.05), lr x 35/70
     ...
    row N-2[ wk       wk               wk      ]     last window: clipped so that its targets
    row N-1  (targets only)                           stay inside the data

Windows never overlap or leave a gap, so every token is predicted once per epoch, and the state
at the end of window k (carried per column, detached) starts window k + 1 on the same text.

The cap guards against a rare very long window exhausting memory (the AWD-LSTM-derived code of
Yang et al. 2018 caps at ``bptt + 40``). Because a longer window sums more per-token losses into one
update, the learning rate of that step is scaled by ``seq_len / bptt`` (:meth:`BPTTSchedule.lr_scale`),
so every token weighs the same whatever the window length.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any


class BPTTSchedule:
    """Draws window lengths from its own ``random.Random``, so resuming restores them exactly.

    Args:
        bptt: the base window length.
        variable: draw lengths as above; when False every window has ``bptt`` steps (evaluation).
        p: probability of the full ``bptt`` base (else ``bptt / 2``).
        std: standard deviation of the normal draw around the base.
        min_len: the shortest window.
        max_delta: the longest window is ``bptt + max_delta``.
        seed: seed of the schedule's generator.
    """

    def __init__(self, bptt: int, *, variable: bool = True, p: float = 0.95, std: float = 5.0,
                 min_len: int = 5, max_delta: int = 40, seed: int = 0) -> None:
        for name, value in (("bptt", bptt), ("min_len", min_len), ("max_delta", max_delta)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if bptt < 1 or min_len < 1 or max_delta < 0:
            raise ValueError(f"need bptt >= 1, min_len >= 1 and max_delta >= 0; "
                             f"got bptt={bptt}, min_len={min_len}, max_delta={max_delta}")
        if min_len > bptt + max_delta:
            raise ValueError(f"min_len={min_len} exceeds the cap bptt + max_delta={bptt + max_delta}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if not std >= 0.0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.bptt, self.variable, self.p, self.std = bptt, bool(variable), float(p), float(std)
        self.min_len, self.max_delta = min_len, max_delta
        self.rng = random.Random(seed)

    def next_length(self) -> int:
        """The length of the next training window."""
        if not self.variable:
            return self.bptt
        base = self.bptt if self.rng.random() < self.p else self.bptt / 2
        length = max(self.min_len, int(self.rng.gauss(base, self.std)))
        return min(length, self.bptt + self.max_delta)

    def lr_scale(self, seq_len: int) -> float:
        """The factor for this step's learning rate: ``seq_len / bptt`` (Merity et al. 2017)."""
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        return seq_len / self.bptt

    def windows(self, n_rows: int, start: int = 0) -> Iterator[tuple[int, int]]:
        """``(i, seq_len)`` for each window of one epoch over an (n_rows, B) batched source.

        Windows tile rows ``start .. n_rows - 1`` without gap or overlap; the last is clipped so
        that its targets stay inside the data, so ``seq_len`` is the length ``get_batch`` returns.
        Resume mid-epoch with ``start`` set to the next row and this schedule's state restored.
        """
        if not 0 <= start < n_rows:
            raise ValueError(f"start must be in [0, {n_rows}) for n_rows={n_rows}, got {start}")
        i = start
        while i < n_rows - 1:
            seq_len = min(self.next_length(), n_rows - 1 - i)
            yield i, seq_len
            i += seq_len

    def state_dict(self) -> dict[str, Any]:
        """The generator state, as plain lists and numbers (fits ``torch.load(weights_only=True)``)."""
        version, internal, gauss_next = self.rng.getstate()
        return {"rng_version": version, "rng_internal": list(internal), "gauss_next": gauss_next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, including the cached second normal deviate of ``gauss``."""
        missing = {"rng_version", "rng_internal", "gauss_next"} - set(state)
        if missing:
            raise ValueError(f"state is missing {', '.join(sorted(missing))}")
        self.rng.setstate((state["rng_version"], tuple(state["rng_internal"]), state["gauss_next"]))

    def __repr__(self) -> str:
        return (f"BPTTSchedule(bptt={self.bptt}, variable={self.variable}, p={self.p}, "
                f"std={self.std}, min_len={self.min_len}, max_delta={self.max_delta})")
