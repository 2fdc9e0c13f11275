"""Binary classification of irregular series with missing values: GRU-D against imputation.

Che et al. (2018) classify each series from its last step (mortality on PhysioNet 2012 and
MIMIC-III). The data come from the seeded generator of :mod:`.synthetic_missing` (where missingness
carries the class) or from long-format CSV files (:mod:`rnnreg.data.irregular_csv`). Every
variable is standardized with the mean and standard deviation of its observed TRAINING values, so
the empirical mean x_mean GRU-D falls back to is 0 and mean imputation is "missing -> 0".

A GRU-D model (:class:`GRUDNet`) reads x, mask, delta and x_last; any other model (SequenceNet)
reads the mean-imputed values m x + (1 - m) x_mean, Che et al.'s GRU-Mean baseline.

Metric: accuracy in percent (the synthetic classes are balanced); ``score`` also reports the
area under the ROC curve ("auc", 0..1), Che et al.'s metric, which is the one to read on
imbalanced real data such as PhysioNet's mortality labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.errors import DataError
from ..data.irregular_csv import read_irregular_csv, read_irregular_folder
from ..data.missing_values import IrregularSeries, empirical_mean, empirical_std
from ..layers.grud_inputs import grud_inputs
from ..models.outputs import SequenceOutput
from .base import Batch, check_positive, check_split
from .sequence_task import batch_generator, SequenceTask
from .synthetic_missing import make_missing_benchmark

SPLITS = ("train", "valid", "test")
INPUTS = ("grud", "imputed")


def binary_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting half. Computed from ranks (the Mann-Whitney U statistic), tied scores
    sharing their average rank, in O(n log n). NaN without both classes."""
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    _, group, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = ((ends - counts + 1 + ends) / 2)[group]  # 1-based, averaged over ties
    u = ranks[labels == 1].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


class MissingValuesTask(SequenceTask):
    """Binary classification of ``splits`` ("train", "valid", "test" -> :class:`IrregularSeries`).

    data_seed: shuffles the training set each epoch. source: for :meth:`describe`. inputs: what
    the model reads: "grud" (x, mask, delta and x_last, for :class:`GRUDNet`) or "imputed" (the
    mean-imputed values, for any other model: Che et al.'s GRU-Mean).
    Attributes: input_size (D), x_mean (D,) (the standardized training mean, ~0).
    """
    name, metric, higher_is_better = "missing", "accuracy", True
    output_size, head = 2, "last"

    def __init__(self, splits: Mapping[str, IrregularSeries], *, data_seed: int = 0, source: str = "",
                 inputs: str = "grud") -> None:
        if inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(map(repr, INPUTS))}, got {inputs!r}")
        if set(splits) != set(SPLITS):
            raise ValueError(f"splits must have exactly the keys {SPLITS}, got {sorted(splits)}")
        train = splits["train"]
        for split, data in splits.items():
            if data.values.shape[-1] != train.values.shape[-1]:
                raise DataError(f"{split} has {data.values.shape[-1]} variables, train has {train.values.shape[-1]}")
            if len(data) == 0 or not set(data.labels.unique().tolist()) <= {0, 1}:
                raise DataError(f"{split} must hold series labelled 0 or 1, got labels "
                                f"{sorted(set(data.labels.tolist()))}")
        mean = empirical_mean(train.values)
        std = empirical_std(train.values, mean)
        self.input_size = int(train.values.shape[-1])
        self.x_mean = empirical_mean((train.values - mean) / std)
        self.data_seed, self.source, self.inputs = int(data_seed), source, inputs
        self._data = {split: self._prepare(splits[split], mean, std) for split in SPLITS}

    def _prepare(self, data: IrregularSeries, mean: Tensor, std: Tensor) -> dict[str, Tensor]:
        prepared = grud_inputs((data.values - mean) / std, data.times, self.x_mean)  # (T, N, D) each
        return {**prepared, "lengths": data.lengths.long(), "label": data.labels.long()}

    @classmethod
    def synthetic(cls, *, seq_len: int = 48, num_features: int = 8, missing_p: float = 0.6,
                  train_size: int = 2000, valid_size: int = 500, test_size: int = 500,
                  data_seed: int = 1234, inputs: str = "grud") -> MissingValuesTask:
        """The informative-missingness benchmark of :mod:`.synthetic_missing`, one generator for all
        splits (train, then valid, then test)."""
        generator = torch.Generator().manual_seed(data_seed)
        sizes = {"train": train_size, "valid": valid_size, "test": test_size}
        splits = {split: make_missing_benchmark(check_positive(f"{split}_size", size), seq_len=seq_len,
                                                num_features=num_features, missing_p=missing_p,
                                                generator=generator)
                  for split, size in sizes.items()}
        return cls(splits, data_seed=data_seed, inputs=inputs,
                   source=f"synthetic, T={seq_len}, D={num_features}, {100 * missing_p:.0f}% missing")

    @classmethod
    def from_csv(cls, path: str | Path, *, valid_size: int, test_size: int, train_size: int = 0,
                 data_seed: int = 1234, inputs: str = "grud") -> MissingValuesTask:
        """A folder with train/valid/test CSV files, or one CSV file split at random (seeded by
        ``data_seed``) into ``valid_size`` and ``test_size`` series and the rest (at most
        ``train_size`` when > 0) for training."""
        path = Path(path)
        if path.is_dir():
            return cls(read_irregular_folder(path), data_seed=data_seed, source=str(path), inputs=inputs)
        data = read_irregular_csv(path)
        if len(data) <= valid_size + test_size:
            raise DataError(f"{path}: {len(data)} series leave none for training after task.valid_size="
                            f"{valid_size} and task.test_size={test_size}")
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(data_seed))
        train = order[valid_size + test_size:]
        train = train[:train_size] if train_size > 0 else train
        splits = {"valid": data.subset(order[:valid_size]),
                  "test": data.subset(order[valid_size:valid_size + test_size]), "train": data.subset(train)}
        return cls(splits, data_seed=data_seed, source=str(path), inputs=inputs)

    @classmethod
    def from_config_values(cls, *, path: str | None, seq_len: int, num_features: int, missing_p: float,
                           train_size: int, valid_size: int, test_size: int, data_seed: int,
                           inputs: str = "grud") -> MissingValuesTask:
        """The builder's entry: CSV data when ``path`` is set, else the synthetic benchmark
        (``train_size`` 0: 2000 synthetic series, or every CSV series not held out)."""
        if path:
            return cls.from_csv(path, valid_size=valid_size, test_size=test_size, train_size=train_size,
                                data_seed=data_seed, inputs=inputs)
        return cls.synthetic(seq_len=seq_len, num_features=num_features, missing_p=missing_p,
                             train_size=train_size or 2000, valid_size=valid_size, test_size=test_size,
                             data_seed=data_seed, inputs=inputs)

    def size(self, split: str) -> int:
        """Series in ``split`` ("train", "valid" or "test")."""
        return int(self._data[split]["label"].numel())

    def _take(self, split: str, index: Tensor) -> Batch:
        data = self._data[split]
        lengths = data["lengths"][index]
        steps = int(lengths.max())  # trim the padding no series of this batch needs
        batch = {k: data[k][:steps, index] for k in ("x", "mask", "delta", "x_last")}  # (T_b, B, D)
        return {**batch, "lengths": lengths, "label": data["label"][index]}

    def num_train_batches(self, batch_size: int) -> int:
        return -(-self.size("train") // check_positive("batch_size", batch_size))

    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        if not 0 <= index < self.num_train_batches(batch_size):
            raise ValueError(f"index must be in [0, {self.num_train_batches(batch_size)}), got {index}")
        order = torch.randperm(self.size("train"), generator=batch_generator(self.data_seed, epoch, 0))
        return self._take("train", order[index * batch_size:(index + 1) * batch_size])

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        total, batch_size = self.size(check_split(split)), check_positive("batch_size", batch_size)
        for start in range(0, total, batch_size):
            yield self._take(split, torch.arange(start, min(start + batch_size, total)))

    def forward(self, model: nn.Module, batch: Batch) -> SequenceOutput:
        if self.inputs == "grud":
            return model(batch["x"], batch["mask"], batch["delta"], batch["x_last"], lengths=batch["lengths"])
        mean = self.x_mean.to(batch["x"].device, batch["x"].dtype)
        return model(torch.where(batch["mask"] > 0, batch["x"], mean), lengths=batch["lengths"])

    def lengths(self, batch: Batch) -> Tensor:
        return batch["lengths"]

    def loss(self, output: SequenceOutput, batch: Batch) -> Tensor:
        return F.cross_entropy(output.prediction, batch["label"])

    @torch.no_grad()
    def score(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        total, right, probabilities, labels = 0.0, 0, [], []
        for batch in batches:
            prediction = self.forward(model, batch).prediction  # (B, 2)
            total += F.cross_entropy(prediction, batch["label"], reduction="sum").item()
            right += int((prediction.argmax(-1) == batch["label"]).sum())
            probabilities.append(prediction.softmax(-1)[:, 1].cpu())
            labels.append(batch["label"].cpu())
        count = sum(len(y) for y in labels)
        if count == 0:
            raise ValueError("score needs at least one batch")
        auc = binary_auc(torch.cat(probabilities), torch.cat(labels))
        return {"loss": total / count, "accuracy": 100.0 * right / count, "auc": auc}

    def describe(self) -> str:
        return f"missing values ({self.source or 'given splits'}), {self.size('train')} training series"
