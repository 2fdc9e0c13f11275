"""Turning what users pass to a recurrent layer into one internal form, and back.

Inside, every layer works on a padded time-major tensor (T, B, F) plus optional per-sequence
lengths in the caller's batch order. At the API we accept and return what torch.nn.LSTM does:
batch-first or time-major tensors, unbatched (T, F) tensors, and PackedSequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


@dataclass(frozen=True)
class SequenceBatch:
    x: Tensor  # (T, B, F), time-major
    lengths: Tensor | None  # (B,) int64 on the CPU, caller's batch order; None = all length T
    packed: PackedSequence | None  # the caller's PackedSequence, to re-pack the output like it
    batch_first: bool
    unbatched: bool

    @classmethod
    def from_input(cls, input: Tensor | PackedSequence, batch_first: bool,
                   lengths: Tensor | Sequence[int] | None = None) -> "SequenceBatch":
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("pass lengths only with a padded tensor, not with a PackedSequence")
            x, lens = pad_packed_sequence(input)  # (T, B, F) in the caller's batch order
            return cls(x, lens, input, batch_first, False)
        if input.dim() not in (2, 3):
            raise ValueError(f"expected a 2-D (unbatched) or 3-D input, got shape {tuple(input.shape)}")
        unbatched = input.dim() == 2
        if unbatched:
            x = input.unsqueeze(1)  # (T, F) -> (T, 1, F)
        else:
            x = input.transpose(0, 1) if batch_first else input  # (B, T, F) -> (T, B, F)
        lens = None if lengths is None else _check_lengths(lengths, x.shape[0], x.shape[1])
        return cls(x, lens, None, batch_first, unbatched)

    def valid(self) -> Tensor | None:
        """(T, B) bool, True on real (non-padding) steps; None when every sequence is full."""
        if self.lengths is None:
            return None
        steps = torch.arange(self.x.shape[0], device=self.x.device)
        return steps[:, None] < self.lengths.to(self.x.device)[None, :]

    def restore(self, out: Tensor) -> Tensor | PackedSequence:
        """Give ``out`` (T, B, F) the caller's form: packed, batch-first or unbatched."""
        if self.packed is not None:
            order = self.packed.sorted_indices
            sorted_out = out if order is None else out.index_select(1, order)  # (T, B, F) sorted
            sorted_len = self.lengths if order is None else self.lengths[order.cpu()]
            data = pack_padded_sequence(sorted_out, sorted_len, enforce_sorted=True).data
            return PackedSequence(data, self.packed.batch_sizes, self.packed.sorted_indices,
                                  self.packed.unsorted_indices)
        if self.unbatched:
            return out.squeeze(1)  # (T, 1, F) -> (T, F)
        return out.transpose(0, 1) if self.batch_first else out  # (T, B, F) -> (B, T, F)


def _require(ok: Tensor, message: str) -> None:
    """A check on tensor values: a ValueError in eager code; under torch.compile an assertion in
    the graph (a RuntimeError with the same message when it fails), since reading the value on the
    host would break the graph."""
    if torch.compiler.is_compiling():
        torch._assert_async(ok, message)
    elif not bool(ok):
        raise ValueError(message)


def _check_lengths(lengths: Tensor | Sequence[int], steps: int, batch: int) -> Tensor:
    lens = torch.as_tensor(lengths, dtype=torch.int64).cpu()
    if lens.shape != (batch,):
        raise ValueError(f"lengths must have one entry per sequence ({batch}), got shape {tuple(lens.shape)}")
    if batch and torch.compiler.is_compiling():
        _require(((lens >= 1) & (lens <= steps)).all(), f"lengths must lie in [1, {steps}]")
    elif batch and (int(lens.min()) < 1 or int(lens.max()) > steps):
        raise ValueError(f"lengths must lie in [1, {steps}], got min {int(lens.min())} max {int(lens.max())}")
    return lens


def reverse_time(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x (T, B, ...) within its own length; padding stays at the end.

    The map is its own inverse, so the same call turns a reversed output back.
    """
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.shape[0], device=x.device)[:, None]  # (T, 1)
    lens = lengths.to(x.device)[None, :]  # (1, B)
    index = torch.where(steps < lens, lens - 1 - steps, steps)  # (T, B)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)  # (T, B, ...)
    return x.gather(0, index)


def initial_state(hx, seq: SequenceBatch, shape: tuple[int, int, int], lstm: bool
                  ) -> tuple[Tensor, Tensor | None]:
    """h_0 (and c_0 for an LSTM), each (L*D, B, H); zeros when hx is None, as in torch.nn."""
    if hx is None:
        zeros = seq.x.new_zeros(shape)
        return zeros, (zeros if lstm else None)
    if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
        # torch.nn raises RuntimeError here too ("lstm expects two hidden states")
        raise RuntimeError("an LSTM's hx must be a tuple of two tensors (h_0, c_0)")
    states = list(hx) if lstm else [hx]
    if seq.unbatched:
        states = [s.unsqueeze(1) for s in states]  # (L*D, H) -> (L*D, 1, H)
    for n, s in enumerate(states):
        if tuple(s.shape) != shape:
            # torch.nn's type and wording (RNNBase.check_hidden_size), naming h_0 / c_0 as well.
            want = (shape[0], shape[2]) if seq.unbatched else shape
            got = list(s.squeeze(1).shape) if seq.unbatched else list(s.shape)
            which = f"hidden[{n}]" if lstm else "hidden"
            raise RuntimeError(f"Expected {which} size {want}, got {got} ({('h_0', 'c_0')[n]})")
        if s.dtype != seq.x.dtype and not torch.is_autocast_enabled(seq.x.device.type):
            # torch.nn's kernels refuse it (RuntimeError); the stepwise kernel would cast it silently
            raise RuntimeError(f"{('h_0', 'c_0')[n]} dtype ({s.dtype}) does not match the input's "
                               f"({seq.x.dtype})")
    return states[0], (states[1] if lstm else None)


def keep_signals(zoneout_keep, seq: SequenceBatch, num_layers: int) -> list[Tensor | None]:
    """Outside zoneout probabilities (surprisal-driven zoneout, Rocki 2016), one per layer.

    Given in the input's layout (batch-first if the layer is), last dim 1 or H; returned
    time-major, broadcastable to (T, B, H).
    """
    if zoneout_keep is None:
        return [None] * num_layers
    many = isinstance(zoneout_keep, (list, tuple))
    signals = list(zoneout_keep) if many else [zoneout_keep] * num_layers
    if len(signals) != num_layers:
        raise ValueError(f"zoneout_keep needs one tensor per layer ({num_layers}), got {len(signals)}")
    out = []
    for s in signals:
        if seq.unbatched:
            s = s.unsqueeze(1)  # (T, H) -> (T, 1, H)
        elif seq.batch_first and seq.packed is None:
            s = s.transpose(0, 1)  # (B, T, H) -> (T, B, H)
        # A NaN fails both comparisons: refused too.
        _require(((s >= 0) & (s <= 1)).all(),
                 "zoneout_keep holds probabilities: every value must lie in [0, 1] (no NaN)")
        out.append(s)
    return out
