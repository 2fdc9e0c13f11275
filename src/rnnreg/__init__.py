"""rnnreg: regularized recurrent neural networks for PyTorch."""

from .layers import GRU, IRNN, LSTM, RNN, RecurrentStates

__all__ = ["GRU", "IRNN", "LSTM", "RNN", "RecurrentStates"]
__version__ = "0.1.0"
