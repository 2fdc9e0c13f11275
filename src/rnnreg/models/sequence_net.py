"""SequenceNet: a stack of rnnreg layers with a linear read-out, for sequence tasks.

Inputs are feature sequences (T, B, I). The read-out is either ``last`` (one prediction per
sequence, from each sequence's last valid step: the adding problem, pixel MNIST) or ``every``
(one per time step: CTC, sequence generation). Regularizers as in the language model: locked
dropout on the input, between layers and on the output (Gal & Ghahramani 2016), Zaremba et al.
(2014)'s fresh-mask dropout on the same connections, and everything on the recurrence in the
layers themselves. Bidirectional layers concatenate both directions (2 H per layer).
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..regularizers.masks import check_probability, dropout_mask
from ..regularizers.monte_carlo import is_stochastic
from ..tasks.base import SequenceOutput
from .language_model import LAYERS
from .stack_options import layer_options


class SequenceNet(nn.Module):
    """input_size -> ``num_layers`` rnnreg layers of ``cell`` -> Linear(output_size).

    head: "last" or "every" (see the module docstring). bidirectional: each layer reads both ways;
    the ``last`` head then joins the forward direction's last step and the backward direction's
    first. Other options as :class:`rnnreg.models.RNNLanguageModel` and the layers.
    """

    def __init__(self, input_size: int, output_size: int, *, head: str = "last", cell: str = "lstm",
                 hidden_size: int = 128, num_layers: int = 1, hidden_sizes: Sequence[int] | None = None,
                 bidirectional: bool = False, input_p: float = 0.0, hidden_p: float = 0.0,
                 output_p: float = 0.0, dropout: float = 0.0, weight_p: float = 0.0,
                 recurrent_dropout: float = 0.0, recurrent_dropout_mode: str = "gal",
                 zoneout_h_p: float = 0.0, zoneout_c_p: float = 0.0, weight_noise_std: float = 0.0,
                 peepholes: bool = False, forget_bias: float | None = None, nonlinearity: str = "tanh",
                 trec_threshold: float = 1.0, recurrent_init: str = "default",
                 implementation: str = "auto", return_cells: bool = False) -> None:
        super().__init__()
        given = dict(locals())
        defaults = {k: p.default for k, p in inspect.signature(SequenceNet.__init__).parameters.items()}
        if head not in ("last", "every"):
            raise ValueError(f"head must be 'last' or 'every', got {head!r}")
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(map(repr, LAYERS))}, got {cell!r}")
        for name, value in (("input_size", input_size), ("output_size", output_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        sizes = list(hidden_sizes) if hidden_sizes else [hidden_size] * num_layers
        if len(sizes) != num_layers or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"hidden_sizes must be {num_layers} positive integers, got {hidden_sizes!r}")
        self.head, self.cell, self.return_cells = head, cell, bool(return_cells)
        self.directions = 2 if bidirectional else 1
        self.input_size, self.sizes = input_size, sizes
        self.input_p = check_probability("input_p", input_p)
        self.hidden_p = check_probability("hidden_p", hidden_p)
        self.output_p = check_probability("output_p", output_p)
        self.dropout = check_probability("dropout", dropout)
        self.mc_dropout = False
        options = layer_options(cell, given, defaults)
        widths = [input_size, *[s * self.directions for s in sizes]]  # each layer's input width
        self.layers = nn.ModuleList(LAYERS[cell](i, h, 1, bidirectional=bool(bidirectional), **options)
                                    for i, h in zip(widths[:-1], sizes))
        self.readout = nn.Linear(widths[-1], output_size)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> SequenceOutput:
        """x (T, B, I) features; lengths (B,) valid steps per sequence (None: all T).
        Returns prediction (B, O) for the ``last`` head, (T, B, O) for ``every``."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (T, B, {self.input_size}), got shape {tuple(x.shape)}")
        stochastic = is_stochastic(self)
        rates = [self.input_p, *[self.hidden_p] * (self.num_layers - 1), self.output_p]
        widths = [self.input_size, *[s * self.directions for s in self.sizes]]
        masks = [dropout_mask((1, x.shape[1], w), p, x) if stochastic and p > 0 else None
                 for p, w in zip(rates, widths)]
        want_cells = self.return_cells and self.cell == "lstm"
        h = self._connect(x, masks[0], stochastic)
        raw, dropped, cells = [], [], []
        for index, layer in enumerate(self.layers):
            out, _, seqs = layer(h, lengths=lengths, return_states=True, return_cells=want_cells)
            h = self._connect(out, masks[index + 1], stochastic)  # (T, B, D H_l)
            raw.append(out)
            dropped.append(h)
            cells.append(seqs.cells[0] if want_cells else None)
        features = h if self.head == "every" else self._last(h, lengths)
        return SequenceOutput(self.readout(features), raw, dropped, cells if want_cells else None)

    def _connect(self, x: Tensor, mask: Tensor | None, stochastic: bool) -> Tensor:
        if stochastic and self.dropout > 0:
            x = F.dropout(x, self.dropout, training=True)
        return x if mask is None else x * mask

    def _last(self, h: Tensor, lengths: Tensor | None) -> Tensor:
        """(T, B, D H) -> (B, D H): the forward direction at each sequence's last valid step, and
        the backward direction at step 0 (where it has read the whole sequence)."""
        steps = h.shape[0]
        last = (torch.full((h.shape[1],), steps - 1, device=h.device) if lengths is None
                else torch.as_tensor(lengths, device=h.device).long() - 1)
        forward = h[last, torch.arange(h.shape[1], device=h.device)]  # (B, D H)
        if self.directions == 1:
            return forward
        size = self.sizes[-1]
        return torch.cat([forward[:, :size], h[0, :, size:]], dim=-1)  # (B, 2 H)

    def extra_repr(self) -> str:
        return (f"head={self.head!r}, cell={self.cell!r}, sizes={self.sizes}, directions={self.directions}, "
                f"input_p={self.input_p}, hidden_p={self.hidden_p}, output_p={self.output_p}, dropout={self.dropout}")
