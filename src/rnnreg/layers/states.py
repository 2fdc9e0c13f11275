"""What a layer returns on request besides torch.nn's (output, h_n): every layer's sequences."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class RecurrentStates:
    """Per-layer sequences, time-major (T, B, D*H) whatever ``batch_first`` says, zero on padding.

    ``raw[l]`` is layer l's hidden sequence as the recurrence produced it (after zoneout);
    ``dropped[l]`` is the same after the dropouts that follow the layer (what the next layer, or
    the caller for the last layer, receives); ``cells[l]`` is an LSTM's cell sequence, present when
    asked for with ``return_cells=True``. AR takes ``dropped[-1]``, TAR ``raw[-1]``, and the
    norm-stabilizer any of them (Merity et al. 2017; Krueger & Memisevic 2016).
    """
    raw: list[Tensor]
    dropped: list[Tensor]
    cells: list[Tensor] | None = None
