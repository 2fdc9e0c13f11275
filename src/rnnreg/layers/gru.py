"""rnnreg.GRU: a drop-in torch.nn.GRU with every regularizer."""

from __future__ import annotations

from torch import nn

from .base import RecurrentBase


class GRU(RecurrentBase, nn.GRU):
    """Drop-in for ``torch.nn.GRU`` (Cho et al. 2014; torch.nn's gate order r, z, n).

    Zoneout applies to h (``zoneout_h_p``); the Semeniuta recurrent-dropout variant drops the
    candidate n_t. Every other keyword is described on :class:`rnnreg.layers.base.RecurrentBase`.

    forward(input, hx=None) -> output, h_n; see ``RecurrentBase.forward`` for extras.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, zoneout_h_p: float = 0.0, **regularizers) -> None:
        if "proj_size" in regularizers:  # torch.nn's check: refused even as 0
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, zoneout_h_p=zoneout_h_p, **regularizers)
