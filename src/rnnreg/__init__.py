"""rnnreg: regularized recurrent neural networks for PyTorch."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from . import penalties, regularizers
from .layers import GRU, IRNN, LSTM, RNN, RecurrentStates
from .regularizers import (Embedding, LockedDropout, WeightDrop, WeightNoise, embedding_dropout,
                           locked_dropout, mc_dropout, mc_predict, set_mc_dropout)

if TYPE_CHECKING:
    from .config import Config
    from .training.progress import Observer

__all__ = ["GRU", "IRNN", "LSTM", "RNN", "RecurrentStates", "Embedding", "LockedDropout",
           "WeightDrop", "WeightNoise", "embedding_dropout", "locked_dropout", "mc_dropout",
           "mc_predict", "penalties", "regularizers", "set_mc_dropout", "train"]
__version__ = "0.1.0"


def train(config: "Config | str | os.PathLike | None", run_dir: str | os.PathLike, *,
          overrides: Sequence[str] = (), observer: "Observer | None" = None) -> dict:
    """Train a new run in ``run_dir``, as ``rnnreg train`` does; returns its summary. See
    :func:`rnnreg.training.new_run.train_new_run` (imported here, not at the top, so that
    ``import rnnreg`` stays the layers and regularizers only)."""
    from .training.new_run import train_new_run

    return train_new_run(config, run_dir, overrides=overrides, observer=observer)
