"""Drop-in recurrent layers with every regularizer."""

from .base import RecurrentBase
from .gru import GRU
from .lstm import LSTM
from .rnn import IRNN, RNN
from .states import RecurrentStates

__all__ = ["GRU", "IRNN", "LSTM", "RNN", "RecurrentBase", "RecurrentStates"]
