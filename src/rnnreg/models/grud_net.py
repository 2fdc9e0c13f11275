"""GRUDNet: one GRU-D layer, locked dropout on its output and a linear read-out of the last step.

Che et al. (2018) classify each series from GRU-D's last hidden state through a sigmoid (binary)
or softmax output layer; we read the last VALID step of each padded series, like SequenceNet's
``last`` head, and return a :class:`SequenceOutput` so the task loop's penalties (AR, TAR,
norm-stabilizer) apply to GRU-D as to any other model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers.grud import GRUD
from ..regularizers.locked_dropout import locked_dropout
from ..regularizers.masks import check_probability
from ..regularizers.monte_carlo import is_stochastic
from .outputs import SequenceOutput


class GRUDNet(nn.Module):
    """input_size variables -> GRUD(hidden_size) -> locked dropout (output_p) -> Linear(output_size).

    x_mean (D,): empirical means of the training data (the GRU-D imputation's fallback).
    recurrent_dropout, recurrent_dropout_mode, zoneout_h_p, implementation: as :class:`GRUD`.
    output_p: one dropout mask per sequence on the GRU-D outputs (Gal & Ghahramani 2016).
    """

    def __init__(self, input_size: int, output_size: int, *, x_mean: Tensor | None = None,
                 hidden_size: int = 64, recurrent_dropout: float = 0.0, recurrent_dropout_mode: str = "gal",
                 zoneout_h_p: float = 0.0, output_p: float = 0.0, implementation: str = "fast") -> None:
        super().__init__()
        if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
            raise ValueError(f"output_size must be a positive integer, got {output_size!r}")
        self.grud = GRUD(input_size, hidden_size, x_mean=x_mean, recurrent_dropout=recurrent_dropout,
                         recurrent_dropout_mode=recurrent_dropout_mode, zoneout_h_p=zoneout_h_p,
                         implementation=implementation)
        self.output_p = check_probability("output_p", output_p)
        self.mc_dropout = False
        self.readout = nn.Linear(hidden_size, output_size)

    @property
    def input_size(self) -> int:
        return self.grud.input_size

    def forward(self, x: Tensor, mask: Tensor, delta: Tensor, x_last: Tensor | None = None,
                lengths: Tensor | None = None) -> SequenceOutput:
        """x, mask, delta, x_last (T, B, D) as :meth:`GRUD.forward`; lengths (B,) or None (all T).
        Returns prediction (B, O) from each series' last valid step."""
        out, _ = self.grud(x, mask, delta, x_last, lengths=lengths)  # (T, B, H)
        dropped = locked_dropout(out, self.output_p, is_stochastic(self))
        steps, batch = out.shape[:2]
        last = (torch.full((batch,), steps - 1, device=out.device) if lengths is None
                else torch.as_tensor(lengths, device=out.device).long() - 1)
        features = dropped[last, torch.arange(batch, device=out.device)]  # (B, H)
        return SequenceOutput(self.readout(features), [out], [dropped])

    def extra_repr(self) -> str:
        return f"output_p={self.output_p}"
