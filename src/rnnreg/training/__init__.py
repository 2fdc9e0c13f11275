"""The one training loop and what it keeps: its state, snapshots, RNG, ranks, progress."""

from .loop import TrainingError, train

__all__ = ["TrainingError", "train"]
