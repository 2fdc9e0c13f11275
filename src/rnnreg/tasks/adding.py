"""The adding problem (Hochreiter & Schmidhuber 1997; in the form of Le, Jaitly & Hinton 2015).

Each step carries two numbers: a value drawn uniformly from [0, 1) and a marker that is 1 at
exactly two steps, one in the first half of the sequence and one in the second half, and 0
elsewhere. After the last step the network must output the sum of the two marked values, so it
has to carry the first value across at least half the sequence: a test of long-range memory.

Baseline: answering 1.0 (the target's mean) whatever the input scores the target's variance,
Var(U1 + U2) = 1/12 + 1/12 = 1/6 ~ 0.1667 in expectation, as the two values are independent and
uniform. The 0.1767 quoted for this baseline in the IRNN literature (Le et al. 2015) fits no
variant we know: where two distinct markers sit does not change the target's distribution, and
the MSE of 1.0 on a sample of 1,000 or 10,000 examples has a standard error of about 0.006 or
0.002 (sd of (y - 1)^2 is sqrt(1/15 - 1/36) ~ 0.197), so 0.1767 would be 5 standard errors off
on a 10,000-example test set. We report the baseline measured on the same data as
``baseline_mse``.

Hochreiter & Schmidhuber's original (Experiment 4, as it is usually described; not checked
against the paper here) draws values from [-1, 1], puts the first marker among the first ten
steps and scales the target to 0.5 + (X1 + X2) / 4; that variant is not implemented.

Data: the training set is a fixed set of ``train_size`` examples (100,000 in Le et al.'s setup),
example ``i`` drawn from its own generator, so it does not depend on the batch size; every epoch
visits it in an order seeded by (data_seed, epoch), which makes batch ``index`` a pure function
of the seed and its arguments (exact resume). Validation and test sets are drawn once, each from
its split generator.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.outputs import SequenceOutput
from .base import Batch, check_positive, check_split
from .sequence_task import batch_generator, EpochOrder, SequenceTask, split_generator

BASELINE_ANSWER = 1.0  # E[U1 + U2] for two independent U[0, 1) values


def _check_seq_len(seq_len: int) -> None:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an integer >= 2 (one marker in each half), got {seq_len!r}")


def adding_batch(batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``batch_size`` adding-problem sequences of ``seq_len`` steps drawn from ``generator``.

    Returns x (T, B, 2) float32, channel 0 the values and channel 1 the markers (exactly one 1 in
    steps [0, T // 2) and one in [T // 2, T)), and y (B,) the sum of the two marked values.
    """
    check_positive("batch_size", batch_size)
    _check_seq_len(seq_len)
    half = seq_len // 2
    values = torch.rand(seq_len, batch_size, generator=generator)  # (T, B)
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, seq_len, (batch_size,), generator=generator)
    columns = torch.arange(batch_size)
    markers = torch.zeros(seq_len, batch_size)  # (T, B)
    markers[first, columns] = 1.0
    markers[second, columns] = 1.0
    target = values[first, columns] + values[second, columns]  # (B,)
    return torch.stack([values, markers], dim=-1), target  # x: (T, B, 2)


class AddingTask(SequenceTask):
    """The adding problem with sequences of ``seq_len`` steps; metric: test MSE (lower is better).

    train_size: examples in the fixed training set; valid_size, test_size: the fixed evaluation
    sets; data_seed: the seed every example and every epoch's order derive from.
    """
    name = "adding"
    metric = "mse"
    higher_is_better = False
    input_size = 2
    output_size = 1
    head = "last"

    def __init__(self, seq_len: int = 100, train_size: int = 100_000, valid_size: int = 1000,
                 test_size: int = 1000, data_seed: int = 1234) -> None:
        _check_seq_len(seq_len)
        if isinstance(data_seed, bool) or not isinstance(data_seed, int):
            raise TypeError(f"data_seed must be an int, got {data_seed!r}")
        self.seq_len = seq_len
        self.train_size = check_positive("train_size", train_size)
        self.data_seed = data_seed
        self._eval = {split: adding_batch(check_positive(f"{split}_size", size), seq_len,
                                          split_generator(data_seed, split))
                      for split, size in (("valid", valid_size), ("test", test_size))}
        self._order = EpochOrder(self.train_size, data_seed)

    def num_train_batches(self, batch_size: int) -> int:
        return self._order.num_batches(batch_size)

    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        chosen = self._order.indices(epoch, index, batch_size)
        pairs = [self._train_example(int(i)) for i in chosen]
        x = torch.cat([p[0] for p in pairs], dim=1)  # (T, B, 2)
        y = torch.cat([p[1] for p in pairs])  # (B,)
        return {"x": x, "y": y}

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        x, y = self._eval[check_split(split)]
        check_positive("batch_size", batch_size)
        for start in range(0, y.shape[0], batch_size):
            yield {"x": x[:, start:start + batch_size], "y": y[start:start + batch_size]}

    def forward(self, model: nn.Module, batch: Batch) -> SequenceOutput:
        return model(batch["x"])

    def loss(self, output: SequenceOutput, batch: Batch) -> Tensor:
        return F.mse_loss(output.prediction.squeeze(-1), batch["y"])  # (B, 1) -> (B,)

    def score(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """MSE of the model and of the constant answer 1.0, both summed over examples, then
        divided by their number (so a short last batch weighs by its size)."""
        squared, baseline, count = 0.0, 0.0, 0
        with torch.no_grad():
            for batch in batches:
                prediction = self.forward(model, batch).prediction.squeeze(-1)  # (B, 1) -> (B,)
                y = batch["y"]
                squared += float(((prediction - y) ** 2).sum())
                baseline += float(((y - BASELINE_ANSWER) ** 2).sum())
                count += y.shape[0]
        if count == 0:
            raise ValueError("score needs at least one batch")
        mse = squared / count
        return {"loss": mse, "mse": mse, "baseline_mse": baseline / count}

    def describe(self) -> str:
        return f"adding problem, T={self.seq_len}, {self.train_size} training sequences"

    def _train_example(self, i: int) -> tuple[Tensor, Tensor]:
        """Training example ``i``: x (T, 1, 2), y (1,). Epoch -1 is never a training epoch and the
        split generators use epoch 0, so no stream is shared with the epoch orders or eval sets."""
        return adding_batch(1, self.seq_len, batch_generator(self.data_seed, -1, i))
