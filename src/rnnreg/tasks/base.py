"""The contract between a task and the one training loop (:func:`rnnreg.training.loop.train`).

A task owns its data, how a batch runs through the model, the loss of a batch and the metric it
is judged by; the loop owns everything else (optimizer, penalties, checkpoints, budgets,
progress). Language modelling is a task like the others (:mod:`.language_model`): its batches are
BPTT windows and it carries the recurrent state from one window to the next. The fixed-set
sequence tasks (adding, MNIST, GRU-D, Clockwork, seq2seq, CTC) share :class:`.SequenceTask`.

One training step, as the loop sees it::

    for position, batch in task.batches(epoch, start):     # position: where the next batch starts
        out, carry = task.step(model, batch, carry)         # carry: LM hidden state, else None
        loss = task.loss(out, batch) + penalties             # lr scaled by task.lr_scale(batch)

Exact resume: ``batches(epoch, start)`` with the task's :meth:`state_dict` restored yields what
an uninterrupted run would have seen from ``start`` on.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

Batch = dict[str, Tensor]
SPLITS = ("valid", "test")
AllSum = Callable[..., list[float]]  # element-wise sum of floats over the ranks of a torchrun job


@dataclass(frozen=True)
class ModelSpec:
    """What the model builder needs to know of a task's data, and nothing else, so a trained run
    rebuilds its model without reading the data again. Stored in every checkpoint.

    head: "lm" (next-token logits), "last" (one prediction per sequence), "every" (one per step),
    "seq2seq" (encoder-decoder). x_mean: GRU-D's imputation fallback (D floats).
    vocab / level / dataset: a language model's token list, "word" or "char", and corpus name.
    frequency_order: a language model's word ids from most to least frequent in the training split
    (only for an adaptive softmax, whose clusters are cut in that order).
    """
    input_size: int
    output_size: int
    head: str
    x_mean: tuple[float, ...] | None = None
    vocab: tuple[str, ...] | None = None
    level: str = ""
    dataset: str = ""
    frequency_order: tuple[int, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain types only, for ``torch.load(weights_only=True)``."""
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})

    def differences(self, other: "ModelSpec") -> list[str]:
        """The fields that differ, in words (for a resume or an evaluation on other data)."""
        words = {"vocab": "vocabulary", "x_mean": "training means (x_mean)"}
        return [words.get(f.name, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]


class Task(ABC):
    """What the training loop asks of a task. Subclasses set the class attributes.

    name: the ``task.kind``. metric: the headline metric, a key of :meth:`evaluate`'s result.
    higher_is_better: its direction. unit: what :meth:`count` counts ("tokens", "examples").
    """
    name: str = ""
    metric: str = ""
    higher_is_better: bool = False
    unit: str = "examples"

    # -- set-up --------------------------------------------------------------------------------
    @abstractmethod
    def model_spec(self) -> ModelSpec:
        """Sizes (and GRU-D means, LM vocabulary) the model is built to."""

    @abstractmethod
    def start(self, *, batch_size: int, eval_batch_size: int, test_batch_size: int,
              device: torch.device, rank: int = 0, world_size: int = 1, all_sum: AllSum | None = None) -> None:
        """Ready the data for training or evaluation on ``device``: this rank's share of every
        training batch (``batch_size`` is the global batch, split over ``world_size`` ranks),
        the evaluation batch sizes, and ``all_sum`` to add numbers up across ranks."""

    def describe(self) -> str:
        """One line for the progress display, e.g. "adding problem, T=100"."""
        return self.name

    # -- training ------------------------------------------------------------------------------
    @abstractmethod
    def epoch_size(self) -> int:
        """Positions in one epoch (batches, or a language model's rows of batched text)."""

    @abstractmethod
    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, Batch]]:
        """(position after the batch, batch) for the rest of ``epoch`` (1-based) from ``start``."""

    @abstractmethod
    def step(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[Any, Any]:
        """Run ``model`` on one training batch from ``carry`` (the state carried from the last
        batch; None at an epoch's start): returns the model output and the carry for the next."""

    @abstractmethod
    def loss(self, output: Any, batch: Batch) -> Tensor:
        """The scalar training loss of a batch: a mean, so it does not grow with the batch size."""

    def lr_scale(self, batch: Batch) -> float:
        """This batch's learning-rate factor (a language model's window length / bptt)."""
        return 1.0

    def count(self, batch: Batch) -> int:
        """How many ``unit`` the batch holds: throughput, and the weight of its loss in the
        epoch's mean."""
        return 1

    def lengths(self, batch: Batch) -> Tensor | None:
        """(B,) real steps of each sequence in the model's hidden states of a padded batch, so
        the penalties skip the padding; None when every step is real."""
        return None

    def incoming_states(self, carry: Any) -> list | None:
        """Per layer, the state each layer started this batch from ((h, c) or h, each (1, B, H)),
        for the norm-stabilizer's first step; None when every batch starts from zeros."""
        return None

    def step_fields(self, batch: Batch, loss: float) -> dict[str, float]:
        """Extra fields for a step record (a language model's window length and perplexity)."""
        return {}

    # -- evaluation ----------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, model: nn.Module, split: str, *, mc_samples: int = 0) -> dict[str, float]:
        """Score ``model`` on ``split``: at least ``{"loss": ..., self.metric: ...}``, averaged
        over examples or tokens. ``mc_samples``: MC-dropout evaluation, where the task has it."""

    @abstractmethod
    def example_batch(self, split: str, steps: int) -> Batch:
        """A batch of ``split`` of at most ``steps`` time steps, for plots of the hidden states."""

    def finish(self, model: nn.Module, *, seed: int) -> dict[str, Any]:
        """End-of-run extras recorded in the summary (a language model's sample text)."""
        return {}

    def better(self, value: float, best: float | None) -> bool:
        """Whether a validation ``value`` of the metric beats ``best`` (None: nothing yet)."""
        if best is None:
            return value == value  # a NaN never becomes the best
        return value > best if self.higher_is_better else value < best

    # -- resume --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What resuming needs beyond the position (a language model's BPTT generator)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
