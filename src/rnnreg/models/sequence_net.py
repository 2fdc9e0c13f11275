"""SequenceNet: a stack of rnnreg layers with a linear read-out, for sequence tasks.

Inputs are feature sequences (T, B, I). The read-out is either ``last`` (one prediction per
sequence, from each sequence's last valid step: the adding problem, pixel MNIST) or ``every``
(one per time step: CTC, sequence generation). The layers are a
:class:`~rnnreg.layers.stack.RecurrentStack`, so the regularizers are the language model's: locked
dropout on the input, between layers and on the output (Gal & Ghahramani 2016), Zaremba et al.
(2014)'s fresh-mask dropout on the same connections, and everything on the recurrence in the
layers themselves. Bidirectional layers concatenate both directions (2 H per layer).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..layers.base import positive_int
from ..layers.stack import RecurrentStack, layer_sizes
from .outputs import SequenceOutput


class SequenceNet(nn.Module):
    """input_size -> ``num_layers`` rnnreg layers of ``cell`` -> Linear(output_size).

    head: "last" or "every" (see the module docstring). bidirectional: each layer reads both ways;
    the ``last`` head then joins the forward direction's last step and the backward direction's
    first. Other options as :class:`rnnreg.models.RNNLanguageModel` and the layers.
    """

    def __init__(self, input_size: int, output_size: int, *, head: str = "last", cell: str = "lstm",
                 hidden_size: int = 128, num_layers: int = 1, hidden_sizes: Sequence[int] | None = None,
                 bidirectional: bool = False, return_cells: bool = False, **options: Any) -> None:
        super().__init__()
        if head not in ("last", "every"):
            raise ValueError(f"head must be 'last' or 'every', got {head!r}")
        self.head = head
        self.layers = RecurrentStack(cell, input_size, layer_sizes(hidden_size, num_layers, hidden_sizes),
                                     bidirectional=bidirectional, return_cells=return_cells,
                                     **options)
        self.readout = nn.Linear(self.layers.widths()[-1], positive_int("output_size", output_size))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def input_size(self) -> int:
        return self.layers.input_size

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> SequenceOutput:
        """x (T, B, I) features; lengths (B,) valid steps per sequence (None: all T).
        Returns prediction (B, O) for the ``last`` head, (T, B, O) for ``every``."""
        out = self.layers(x, lengths=lengths)
        features = out.output if self.head == "every" else self._last(out.output, lengths)
        return SequenceOutput(self.readout(features), out.raw, out.dropped, out.cells)

    def _last(self, h: Tensor, lengths: Tensor | None) -> Tensor:
        """(T, B, D H) -> (B, D H): the forward direction at each sequence's last valid step, and
        the backward direction at step 0 (where it has read the whole sequence)."""
        steps = h.shape[0]
        last = (torch.full((h.shape[1],), steps - 1, device=h.device) if lengths is None
                else torch.as_tensor(lengths, device=h.device).long() - 1)
        forward = h[last, torch.arange(h.shape[1], device=h.device)]  # (B, D H)
        if self.layers.directions == 1:
            return forward
        size = self.layers.sizes[-1]
        return torch.cat([forward[:, :size], h[0, :, size:]], dim=-1)  # (B, 2 H)

    def extra_repr(self) -> str:
        return f"head={self.head!r}"
