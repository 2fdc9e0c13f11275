"""TIMIT phone recognition with CTC, scored by phone error rate on 39 folded phones: the phoneme
task of Krueger & Memisevic (2016, "Regularizing RNNs by stabilizing activations"), whose abstract
reports 18.6% PER for a norm-stabilized network decoded without beam search.

Frames: log mel features (:mod:`rnnreg.data.filterbank`), each feature normalised to zero mean and
unit variance with statistics of the training set. Labels: the 39 folded phones, or the 61 of the
.PHN files (``train_phones=61``), which are then folded to 39 before scoring, the usual practice
since Lee & Hon (1989). The metric is the label error rate over the folded phones (PER, percent).

Training batches: the epoch's order of the training utterances comes from
``batch_generator(data_seed, epoch, -1)``, so batch ``index`` is a pure function of its arguments.
Subsets (``train_size`` etc. > 0, for quick runs) are drawn from ``batch_generator(data_seed, -2, k)``
with k = 0, 1, 2 for train, valid, test. Utterances are batched in random order, not by length.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from ..data.filterbank import feature_size
from ..data.timit import TimitUtterance, feature_statistics, load_timit, timit_root
from ..data.timit_conventions import FOLD_39, PHONES_39, PHONES_61, fold_phones
from .base import Batch, check_positive
from .sequence_task import batch_generator
from .ctc_base import CTCLabellingTask, Example, pad_ctc_batch

logger = logging.getLogger(__name__)


class TimitTask(CTCLabellingTask):
    """CTC phone recognition on the TIMIT copy at ``root`` (LDC layout; see :mod:`rnnreg.data.timit`).

    train_phones: 39 (train on folded phones) or 61. num_mels / energy / deltas: the features.
    train_size / valid_size / test_size: use at most this many utterances of the split, a subset
    drawn with ``data_seed`` (0: all; the standard sets are 3,696 / 400 / 192). beam_size: 1 greedy.
    """
    name = "ctc"

    def __init__(self, root: str | Path | None, *, train_phones: int = 39, num_mels: int = 40, energy: bool = True,
                 deltas: int = 2, train_size: int = 0, valid_size: int = 0, test_size: int = 0,
                 data_seed: int = 1234, beam_size: int = 1) -> None:
        super().__init__(beam_size)
        if train_phones not in (39, 61):
            raise ValueError(f"train_phones must be 39 or 61, got {train_phones!r}")
        for name, value in (("train_size", train_size), ("valid_size", valid_size), ("test_size", test_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0: the whole split), got {value!r}")
        self.root, self.train_phones, self.data_seed = timit_root(root), train_phones, data_seed
        self.phone_set = PHONES_39 if train_phones == 39 else PHONES_61
        self._index = {p: i + 1 for i, p in enumerate(self.phone_set)}  # 0 is the blank
        self.input_size = feature_size(num_mels, energy, deltas)
        self.output_size = len(self.phone_set) + 1
        index39 = {p: i + 1 for i, p in enumerate(PHONES_39)}
        self._to39 = [0] + [index39[FOLD_39[p]] if FOLD_39[p] else 0 for p in PHONES_61]  # 0: deleted
        options = dict(num_mels=num_mels, energy=energy, deltas=deltas)
        limits = {"train": train_size, "valid": valid_size, "test": test_size}
        raw = {split: self._subset(load_timit(self.root, split, **options), limits[split], split)
               for split in ("train", "valid", "test")}
        self.mean, self.std = feature_statistics(raw["train"])
        self.examples = {split: [self._example(u) for u in utts] for split, utts in raw.items()}

    def num_train_batches(self, batch_size: int) -> int:
        return math.ceil(len(self.examples["train"]) / check_positive("batch_size", batch_size))

    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        if not 0 <= index < self.num_train_batches(batch_size):
            raise ValueError(f"index must be in [0, {self.num_train_batches(batch_size)}), got {index}")
        train = self.examples["train"]
        order = torch.randperm(len(train), generator=batch_generator(self.data_seed, epoch, -1))
        return pad_ctc_batch([train[int(i)] for i in order[index * batch_size:(index + 1) * batch_size]])

    def eval_examples(self, split: str) -> list[Example]:
        return self.examples[split]

    def score_labels(self, labels: list[int]) -> list[int]:
        """Training labels -> 39-phone indices (61-phone training: folded, glottal stops deleted)."""
        if self.train_phones == 39:
            return labels
        return [self._to39[i] for i in labels if self._to39[i]]

    def describe(self) -> str:
        sizes = "/".join(str(len(self.examples[s])) for s in ("train", "valid", "test"))
        return (f"TIMIT phone recognition ({self.train_phones} phones, scored on 39), "
                f"{self.input_size} features, {sizes} utterances")

    def _example(self, utterance: TimitUtterance) -> Example:
        phones = fold_phones(utterance.phones) if self.train_phones == 39 else utterance.phones
        labels = torch.tensor([self._index[p] for p in phones], dtype=torch.long)
        # In place: one copy of the features (about 0.5 GB for the TIMIT training set), not two.
        return utterance.features.sub_(self.mean).div_(self.std), labels

    def _subset(self, utterances: list[TimitUtterance], limit: int, split: str) -> list[TimitUtterance]:
        if limit == 0 or limit >= len(utterances):
            return utterances
        logger.warning("TIMIT %s: using %d of %d utterances, so results are not comparable to "
                       "published ones", split, limit, len(utterances))
        stream = batch_generator(self.data_seed, -2, ("train", "valid", "test").index(split))
        keep = torch.randperm(len(utterances), generator=stream)
        return [utterances[int(i)] for i in sorted(keep[:limit].tolist())]

