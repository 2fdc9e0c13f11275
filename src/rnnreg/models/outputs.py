"""What the task models return: every layer's sequences beside the prediction, for the penalties."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class SequenceOutput:
    """What a task model returns (time-major; l indexes layers, H_l is layer l's output size).

    prediction: the task's output: (B, O) for a ``last`` head, (T, B, O) for an ``every`` head,
        (T_out, B, V) decoder scores for seq2seq. raw[l]: (T, B, H_l) layer outputs, for TAR and
        the norm-stabilizer; dropped[l]: the same after the dropouts that follow, for AR.
        cells: LSTM cell sequences when asked for, else None.
    """
    prediction: Tensor
    raw: list[Tensor]
    dropped: list[Tensor]
    cells: list[Tensor] | None = None
