"""rnnreg.LSTM: a drop-in torch.nn.LSTM with every regularizer and the peephole variant."""

from __future__ import annotations

from torch import nn

from .base import RecurrentBase


class LSTM(RecurrentBase, nn.LSTM):
    """Drop-in for ``torch.nn.LSTM`` (same arguments, parameter names, shapes and results).

    LSTM-specific arguments:
      peepholes: diagonal connections from the cell to the i, f (c_{t-1}) and o (c_t) gates
        (Gers & Schmidhuber 2000; Greff et al. 2017), parameters ``weight_ch_l{k}`` of shape (3H,).
      forget_bias: initial value of the forget-gate bias (Jozefowicz et al. 2015 recommend 1.0).
      zoneout_h_p, zoneout_c_p: separate zoneout rates for h and c (Krueger et al. 2016).
    Every other keyword (dropouts, weight drop, weight noise, recurrent dropout, implementation,
    mc_dropout) is described on :class:`rnnreg.layers.base.RecurrentBase`.

    forward(input, hx=None) -> output, (h_n, c_n); see ``RecurrentBase.forward`` for extras.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, peepholes: bool = False,
                 forget_bias: float | None = None, zoneout_h_p: float = 0.0,
                 zoneout_c_p: float = 0.0, **regularizers) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, peepholes=peepholes, forget_bias=forget_bias,
                         zoneout_h_p=zoneout_h_p, zoneout_c_p=zoneout_c_p, proj_size=proj_size,
                         **regularizers)
