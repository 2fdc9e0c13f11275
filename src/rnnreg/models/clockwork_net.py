"""ClockworkNet: one Clockwork RNN layer with a linear read-out at every step.

Koutnik et al. (2014), sec. 3, eq. 2: y_O(t) = f_O(W_O h(t)); the sequence-generation experiment
(sec. 4.1) uses a linear output. Locked dropout (Gal & Ghahramani 2016) may sit on the input and
on the layer's output before the read-out; the layer's own regularizers act on the recurrence.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers.clockwork import ClockworkRNN
from ..regularizers.locked_dropout import locked_dropout
from ..regularizers.masks import check_probability
from ..regularizers.monte_carlo import is_stochastic
from .outputs import SequenceOutput


class ClockworkNet(nn.Module):
    """input_size -> ClockworkRNN(hidden_size, clockwork_periods) -> Linear(output_size), per step.

    Arguments are named like the config's ModelConfig fields. input_p / output_p: locked dropout on
    the input and on h before the read-out; recurrent_dropout, zoneout_h_p, nonlinearity,
    trec_threshold, implementation: see :class:`rnnreg.layers.clockwork.ClockworkRNN`.

    forward(x (T, B, I)) -> SequenceOutput(prediction (T, B, O), raw=[h (T, B, H)],
    dropped=[h after output dropout]).
    """

    def __init__(self, input_size: int, output_size: int, *, hidden_size: int = 40,
                 clockwork_periods: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
                 nonlinearity: str = "tanh", trec_threshold: float = 1.0, input_p: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout_h_p: float = 0.0, output_p: float = 0.0,
                 implementation: str = "fast") -> None:
        super().__init__()
        if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
            raise ValueError(f"output_size must be a positive integer, got {output_size!r}")
        self.input_p = check_probability("input_p", input_p)
        self.output_p = check_probability("output_p", output_p)
        self.mc_dropout = False
        self.rnn = ClockworkRNN(input_size, hidden_size, tuple(clockwork_periods), nonlinearity=nonlinearity,
                                trec_threshold=trec_threshold, recurrent_dropout=recurrent_dropout,
                                zoneout_h_p=zoneout_h_p, implementation=implementation)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor) -> SequenceOutput:
        """x (T, B, I) -> prediction (T, B, O) at every step."""
        stochastic = is_stochastic(self)
        h, _ = self.rnn(locked_dropout(x, self.input_p, stochastic))  # (T, B, H)
        dropped = locked_dropout(h, self.output_p, stochastic)
        return SequenceOutput(self.readout(dropped), [h], [dropped])

    def extra_repr(self) -> str:
        return f"input_p={self.input_p}, output_p={self.output_p}"
