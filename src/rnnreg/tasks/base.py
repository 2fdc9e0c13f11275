"""The contract between a supervised sequence task and the generic training loop.

A task owns its data (generated from a seed, or read from files), the loss of one batch and the
metric it is judged by; the loop (:func:`rnnreg.training.task_loop.train_task`) owns everything else:
optimizer, penalties, checkpoints, progress. Batches are dicts of tensors, time-major inside
(sequences ``(T, B, ...)``), so the loop can move them to a device without knowing the task.

Exact resume: ``train_batch(epoch, index, batch_size)`` is a pure function of the task's seed and
its arguments, so a run stopped after batch ``index`` continues with batch ``index + 1`` of the
same epoch and sees exactly the data an uninterrupted run would have seen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

Batch = dict[str, Tensor]
SPLITS = ("valid", "test")


@dataclass(frozen=True)
class SequenceOutput:
    """What a task model returns (time-major; l indexes layers, H_l is layer l's output size).

    prediction: the task's output: (B, O) for a ``last`` head, (T, B, O) for an ``every`` head,
        (T_out, B, V) decoder scores for seq2seq. raw[l]: (T, B, H_l) layer outputs, for TAR and
        the norm-stabilizer; dropped[l]: the same after the dropouts that follow, for AR.
        cells: LSTM cell sequences when asked for, else None.
    """
    prediction: Tensor
    raw: list[Tensor]
    dropped: list[Tensor]
    cells: list[Tensor] | None = None


class Task(ABC):
    """A supervised sequence task. Subclasses set the class attributes and implement the methods.

    name: registry name, e.g. "adding". metric: the headline metric, a key of :meth:`score`'s
    result ("mse", "accuracy", "exact_match", "ler", ...). higher_is_better: its direction.
    input_size: features per time step (or the input vocabulary for token inputs).
    output_size: outputs per prediction (classes, targets, labels + blank, output vocabulary).
    head: which model shape fits: "last" (one prediction per sequence from the last step),
    "every" (one per time step), "seq2seq" (encoder-decoder).
    """
    name: str = ""
    metric: str = ""
    higher_is_better: bool = False
    input_size: int = 0
    output_size: int = 0
    head: str = "last"

    @abstractmethod
    def num_train_batches(self, batch_size: int) -> int:
        """Batches in one training epoch."""

    @abstractmethod
    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        """Training batch ``index`` of ``epoch`` (1-based epochs); a pure function of the task's
        seed and the arguments (see the module docstring)."""

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """The fixed ``split`` ("valid" or "test") in batches of at most ``batch_size``."""

    @abstractmethod
    def forward(self, model: nn.Module, batch: Batch) -> SequenceOutput:
        """Run ``model`` on the batch's inputs (training: with teacher forcing where it applies)."""

    @abstractmethod
    def loss(self, output: SequenceOutput, batch: Batch) -> Tensor:
        """The scalar training loss of a batch: a mean, so it does not grow with the batch size."""

    @abstractmethod
    def score(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """Evaluate ``model`` (already in eval mode) on ``batches``: at least ``{"loss": mean
        loss, self.metric: value}``, both averaged over examples (or targets), not batches."""

    def describe(self) -> str:
        """One line for the progress display, e.g. "adding problem, T=100"."""
        return self.name

    def lengths(self, batch: Batch) -> Tensor | None:
        """(B,) real steps of each sequence in the model's hidden states (``SequenceOutput.raw``)
        of a padded batch, so the penalties skip the padding; None when every step is real."""
        return None


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def batch_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator for one training batch, seeded from (seed, epoch, index) alone.

    The three are mixed with large odd multipliers so neighbouring batches, epochs and seeds get
    unrelated streams, and no state carries from one batch to the next (see exact resume above).
    """
    mixed = (seed * 1_000_003 + epoch * 7_919 * 104_729 + index * 2_654_435_761) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def split_generator(seed: int, split: str) -> torch.Generator:
    """The generator for a generated task's fixed ``split``: epoch 0 is never a training epoch, so
    validation and test data never coincide with a training batch."""
    return batch_generator(seed, 0, -1 - SPLITS.index(check_split(split)))


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """The batch with every tensor on ``device``."""
    return {key: value.to(device) for key, value in batch.items()}


def on_device(batches: Iterable[Batch], device: torch.device | str) -> Iterator[Batch]:
    """Batches moved to ``device`` one at a time, as they are consumed."""
    return (to_device(batch, device) for batch in batches)


class EpochOrder:
    """Which examples of a fixed training set of ``size`` batch ``index`` of ``epoch`` holds.

    Each epoch visits the set in its own order, a permutation drawn from
    ``batch_generator(seed, epoch, -1)`` (index -1 is never a batch's), cached for the epoch in
    progress; so a batch is a pure function of (seed, epoch, index), as exact resume needs.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = check_positive("size", size), seed
        self._cached: tuple[int, Tensor] | None = None

    def num_batches(self, batch_size: int) -> int:
        return -(-self.size // check_positive("batch_size", batch_size))

    def indices(self, epoch: int, index: int, batch_size: int) -> Tensor:
        """(B,) example indices of the batch; the last batch of an epoch may be short."""
        if not 0 <= index < self.num_batches(batch_size):
            raise ValueError(f"index must be in [0, {self.num_batches(batch_size)}), got {index}")
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, torch.randperm(self.size, generator=batch_generator(self.seed, epoch, -1)))
        return self._cached[1][index * batch_size:(index + 1) * batch_size]
