"""Drop-in recurrent layers with every regularizer."""

from .base import RecurrentBase
from .clockwork import ClockworkRNN
from .gru import GRU
from .grud import GRUD
from .lstm import LSTM
from .rnn import IRNN, RNN
from .stack import RecurrentStack, StackOutput
from .states import RecurrentStates

__all__ = ["ClockworkRNN", "GRU", "GRUD", "IRNN", "LSTM", "RNN", "RecurrentBase", "RecurrentStack",
           "RecurrentStates", "StackOutput"]
