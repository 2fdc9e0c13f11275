"""Sequence generation: produce one fixed waveform from a constant input (Koutnik et al. 2014).

Koutnik, Greff, Gomez & Schmidhuber (2014), "A Clockwork RNN", ICML, sec. 4.1: a network that
receives no input must output a 320-sample target signal (a music fragment in the paper), scored
by the normalised mean squared error NMSE = MSE / Var(target); lower is better. This is a
memorisation / generation-capacity task: there is ONE sequence, every training batch is that
sequence (repeated ``batch_size`` times, which only matters when dropout makes the copies
differ), and validation and test score the same sequence again. Nothing here measures
generalisation.

The paper's music clip is not available, so the target is synthetic and says so: a seeded
"music-like" sum of a few notes, each a fundamental with decaying harmonics, starting at its own
onset with a short attack and an exponential decay, peak-normalised to [-1, 1] (see
:func:`music_like_signal`). Different seeds give different signals; compare models on one seed.

"No input" is given as a constant input of ``input_value`` (default 1) at every step, shape
(T, B, 1), so the standard layers (which need an input) and the Clockwork RNN see the same thing;
a constant input adds nothing a bias cannot express.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..models.outputs import SequenceOutput
from .base import Batch, check_positive, check_split
from .sequence_task import SequenceTask, split_generator

# The synthetic clip's recipe (our choices): periods and decays are in samples, so at the paper's
# 320 samples a clip holds a few cycles of each note, like 7 ms of 44.1 kHz audio does of real notes.
NOTES = 3
HARMONICS = 4
PERIOD_RANGE = (24.0, 120.0)     # a note's fundamental period
DECAY_RANGE = (80.0, 400.0)      # time constant of a note's exponential decay
ATTACK = 4.0                     # time constant of a note's onset ramp


def music_like_signal(seq_len: int, generator: torch.Generator) -> Tensor:
    """A (seq_len,) float32 waveform with peak |value| 1: NOTES notes (the first starts at 0, the
    others in the first two thirds), each HARMONICS partials with amplitudes ~U(0.3, 1)/k and
    random phases, shaped by (1 - exp(-age / ATTACK)) * exp(-age / decay)."""
    if check_positive("seq_len", seq_len) < 2:
        raise ValueError(f"seq_len must be at least 2 (the first sample is always 0), got {seq_len}")
    t = torch.arange(seq_len, dtype=torch.float64)
    signal = torch.zeros(seq_len, dtype=torch.float64)

    def uniform(low: float, high: float, n: int = 1) -> Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)

    for note in range(NOTES):
        latest = max(1, 2 * seq_len // 3)
        onset = 0.0 if note == 0 else float(torch.randint(0, latest, (1,), generator=generator))
        period, decay = float(uniform(*PERIOD_RANGE)), float(uniform(*DECAY_RANGE))
        k = torch.arange(1, HARMONICS + 1, dtype=torch.float64)
        amplitude, phase = uniform(0.3, 1.0, HARMONICS) / k, uniform(0.0, 2 * math.pi, HARMONICS)
        age = (t - onset).clamp(min=0.0)
        cycles = k[:, None] * age / period  # (K, T): cycles of each partial since the onset
        partials = amplitude[:, None] * torch.sin(2 * math.pi * cycles + phase[:, None])  # (K, T)
        envelope = (1 - torch.exp(-age / ATTACK)) * torch.exp(-age / decay) * (t >= onset)
        signal += envelope * partials.sum(0)
    return (signal / signal.abs().max()).float()


def nmse(prediction: Tensor, target: Tensor) -> Tensor:
    """Normalised MSE over (T, B, ...) sequences: total squared error over the total squared
    deviation of each sequence from its own mean (sum_b MSE_b / sum_b Var_b; population variance).
    1.0 is what predicting each sequence's mean scores; 0 is a perfect fit."""
    error, spread = squared_sums(prediction, target)
    return error / spread


def squared_sums(prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(sum of squared errors, sum of squared deviations of each sequence from its mean over time)."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    return (prediction - target).pow(2).sum(), (target - target.mean(0, keepdim=True)).pow(2).sum()


class SignalGenerationTask(SequenceTask):
    """Fit one ``seq_len``-sample waveform from a constant input (see the module docstring).

    train_size: training batches per epoch (all identical). data_seed: which waveform.
    Batches: "inputs" (T, B, 1) constant, "targets" (T, B, 1) the waveform.
    """
    name = "clockwork"
    metric = "nmse"
    higher_is_better = False
    input_size = 1
    output_size = 1
    head = "every"

    def __init__(self, seq_len: int = 320, *, train_size: int = 50, data_seed: int = 1234,
                 input_value: float = 1.0) -> None:
        self.seq_len = seq_len
        self.train_size = check_positive("train_size", train_size)
        if isinstance(input_value, bool) or not isinstance(input_value, (int, float)) \
                or not math.isfinite(input_value):
            raise ValueError(f"input_value must be a finite number, got {input_value!r}")
        if isinstance(data_seed, bool) or not isinstance(data_seed, int):
            raise TypeError(f"data_seed must be an integer, got {data_seed!r}")
        self.data_seed, self.input_value = data_seed, float(input_value)
        # Drawn from the valid split's stream: a pure function of the seed, like other generated tasks.
        self.signal = music_like_signal(seq_len, split_generator(data_seed, "valid"))  # (T,)

    def _batch(self, batch_size: int) -> Batch:
        target = self.signal[:, None, None].expand(self.seq_len, batch_size, 1).contiguous()  # (T, B, 1)
        return {"inputs": torch.full_like(target, self.input_value), "targets": target}

    def num_train_batches(self, batch_size: int) -> int:
        return self.train_size

    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        return self._batch(check_positive("batch_size", batch_size))

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """The one sequence, once (batch of 1), for either split."""
        check_split(split)
        check_positive("batch_size", batch_size)
        yield self._batch(1)

    def forward(self, model: nn.Module, batch: Batch) -> SequenceOutput:
        return model(batch["inputs"])

    def loss(self, output: SequenceOutput, batch: Batch) -> Tensor:
        return (output.prediction - batch["targets"]).pow(2).mean()

    def score(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """{"loss": MSE, "mse": MSE, "nmse": NMSE} over every scored sample."""
        error = spread = count = 0.0
        with torch.no_grad():
            for batch in batches:
                sums = squared_sums(self.forward(model, batch).prediction, batch["targets"])
                error, spread = error + float(sums[0]), spread + float(sums[1])
                count += batch["targets"].numel()
        if count == 0:
            raise ValueError("score needs at least one batch")
        return {"loss": error / count, "mse": error / count, "nmse": error / spread}

    def describe(self) -> str:
        return f"signal generation, T={self.seq_len}, seed {self.data_seed}"
