"""rnnreg: regularized recurrent neural networks for PyTorch."""

from . import penalties, regularizers
from .layers import GRU, IRNN, LSTM, RNN, RecurrentStates
from .regularizers import (Embedding, LockedDropout, WeightDrop, WeightNoise, embedding_dropout,
                           locked_dropout, mc_dropout, mc_predict, set_mc_dropout)

__all__ = ["GRU", "IRNN", "LSTM", "RNN", "RecurrentStates", "Embedding", "LockedDropout",
           "WeightDrop", "WeightNoise", "embedding_dropout", "locked_dropout", "mc_dropout",
           "mc_predict", "penalties", "regularizers", "set_mc_dropout"]
__version__ = "0.1.0"
