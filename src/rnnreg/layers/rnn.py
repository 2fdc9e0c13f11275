"""rnnreg.RNN and IRNN: Elman RNNs with tanh, ReLU or TRec, and the identity-initialised IRNN."""

from __future__ import annotations

from torch import nn

from .base import RecurrentBase


class RNN(RecurrentBase, nn.RNN):
    """Drop-in for ``torch.nn.RNN``.

    nonlinearity: "tanh", "relu" (both on torch.nn's fused kernels) or "trec", the thresholded
        rectifier x * [x > trec_threshold] used by Krueger & Memisevic 2016 (stepwise path).
    recurrent_init: "default" (torch.nn's) or "identity" (IRNN, Le et al. 2015).
    zoneout_h_p and every other keyword: see :class:`rnnreg.layers.base.RecurrentBase`.

    forward(input, hx=None) -> output, h_n; see ``RecurrentBase.forward`` for extras.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, *,
                 trec_threshold: float = 1.0, recurrent_init: str = "default",
                 zoneout_h_p: float = 0.0, **regularizers) -> None:
        if "proj_size" in regularizers:  # torch.nn's check: refused even as 0
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if nonlinearity not in ("tanh", "relu", "trec"):  # torch.nn's message, and rnnreg's third
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'. "
                             "rnnreg also takes 'trec'.")
        super().__init__("rnn", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, nonlinearity=nonlinearity,
                         trec_threshold=trec_threshold, recurrent_init=recurrent_init,
                         zoneout_h_p=zoneout_h_p, **regularizers)


class IRNN(RNN):
    """ReLU RNN with identity recurrent weights and zero biases (Le, Jaitly & Hinton 2015)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs) -> None:
        super().__init__(input_size, hidden_size, num_layers, nonlinearity="relu",
                         recurrent_init="identity", **kwargs)
