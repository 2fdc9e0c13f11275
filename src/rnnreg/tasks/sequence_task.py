"""SequenceTask: a task with fixed training and evaluation sets of independent sequences.

The adding problem, pixel MNIST, GRU-D's missing values, the Clockwork RNN's signal, seq2seq and
CTC all share this shape: batch ``index`` of ``epoch`` is a pure function of the task's seed
(:func:`batch_generator`, :class:`EpochOrder`), so a run stopped after batch ``index`` goes on
with batch ``index + 1`` and sees exactly the data an uninterrupted run would have seen; no state
is carried between batches; and the validation and test sets never change.

Subclasses implement the per-task part (``num_train_batches``, ``train_batch``, ``eval_batches``,
``forward``, ``loss``, ``score``); this class turns it into the loop's :class:`.Task` contract.

Under torchrun each step's global batch of ``batch_size`` is split over the ranks: at step s,
rank r takes the task's batch ``s * world + r`` of ``batch_size / world`` examples. For a set
visited in a seeded order (:class:`EpochOrder`) the ranks' batches of one step are exactly the
examples of the single-process batch s; an epoch's last batches that do not fill every rank are
left out so that all ranks take the same number of steps.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .base import AllSum, Batch, ModelSpec, Task, check_positive, check_split


class SequenceTask(Task):
    """Fixed-set sequence task. Class attributes as :class:`.Task`, plus input_size (features
    per step, or the input vocabulary), output_size (classes, targets, labels + blank, output
    vocabulary) and head ("last", "every" or "seq2seq": which model shape fits)."""
    input_size: int = 0
    output_size: int = 0
    head: str = "last"

    @abstractmethod
    def num_train_batches(self, batch_size: int) -> int:
        """Batches of ``batch_size`` in one training epoch."""

    @abstractmethod
    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        """Training batch ``index`` of ``epoch`` (1-based epochs); a pure function of the task's
        seed and the arguments."""

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """The fixed ``split`` ("valid" or "test") in batches of at most ``batch_size``."""

    @abstractmethod
    def forward(self, model: nn.Module, batch: Batch) -> Any:
        """Run ``model`` on the batch's inputs (training: with teacher forcing where it applies)."""

    @abstractmethod
    def score(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """Evaluate ``model`` (already in eval mode) on ``batches``: at least ``{"loss": mean
        loss, self.metric: value}``, both averaged over examples (or targets), not batches."""

    # -- the loop's contract ---------------------------------------------------------------------
    def model_spec(self) -> ModelSpec:
        mean = getattr(self, "x_mean", None)
        return ModelSpec(self.input_size, self.output_size, self.head,
                         x_mean=None if mean is None else tuple(float(v) for v in mean))

    def start(self, *, batch_size: int, eval_batch_size: int, test_batch_size: int,
              device: torch.device, rank: int = 0, world_size: int = 1, all_sum: AllSum | None = None) -> None:
        check_positive("batch_size", batch_size)
        if batch_size % world_size:
            raise ValueError(f"data.batch_size ({batch_size}) must divide evenly over the "
                             f"{world_size} processes")
        self._local = batch_size // world_size                # each rank's share of a step's batch
        self._rank, self._world, self._device = rank, world_size, device
        self._eval_sizes = {"valid": check_positive("eval_batch_size", eval_batch_size),
                            "test": check_positive("eval_batch_size", eval_batch_size)}

    def epoch_size(self) -> int:
        steps = self.num_train_batches(self._local) // self._world
        if steps < 1:
            raise ValueError(f"the training set has fewer batches of {self._local} than the "
                             f"{self._world} processes; lower data.batch_size")
        return steps

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, Batch]]:
        for index in range(start, self.epoch_size()):
            batch = self.train_batch(epoch, index * self._world + self._rank, self._local)
            yield index + 1, to_device(batch, self._device)

    def step(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[Any, None]:
        return self.forward(model, batch), None              # sequences are independent: no carry

    def count(self, batch: Batch) -> int:
        """Sequences in the batch."""
        lengths = self.lengths(batch)
        if lengths is not None:
            return int(lengths.numel())
        inputs = batch["x"] if "x" in batch else batch["inputs"]   # (T, B, ...)
        return int(inputs.shape[1])

    def evaluate(self, model: nn.Module, split: str, *, mc_samples: int = 0) -> dict[str, float]:
        if mc_samples:
            raise ValueError("MC-dropout evaluation applies to language models; "
                             f"{self.name} is scored deterministically")
        model.eval()
        return self.score(model, on_device(self.eval_batches(check_split(split), self._eval_sizes[split]),
                                           self._device))

    def example_batch(self, split: str, steps: int) -> Batch:
        """The first 16 sequences of ``split`` (the model runs on all their steps; plots cut at
        ``steps``)."""
        return to_device(next(iter(self.eval_batches(check_split(split), 16))), self._device)


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
    return batch_generator(seed, 0, -1 - ("valid", "test").index(check_split(split)))


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
