"""Pixel-by-pixel MNIST: sequential (sMNIST) and permuted (pMNIST) digit classification.

Each 28 x 28 image is read one pixel per step, 784 steps of one value in [0, 1], row by row
(Le, Jaitly & Hinton 2015), or in one fixed random order for pMNIST, the same order for every
image of every split; the class is read from the last step. Metric: test accuracy in percent.

The permutation is a true one (every pixel seen once), drawn from ``data_seed``. The zoneout
reference code (Krueger et al. 2017, zoneout_pmnist.py) draws its "permutation" with
``np.random.randint(0, 784, 784)``, i.e. with replacement: about 1/e (37%) of the pixels are never
shown and others repeat, so that code trains on a different task than pMNIST.

Splits: validation is the last ``valid_size`` training images (the zoneout code holds out the
last 10,000 of the 60,000, Krueger et al. 2017; set ``valid_size=10000`` to match), training the
images before them (the first ``train_size`` of those when it is positive, for quick runs), test
the 10,000 test images. Each epoch visits the training images in an order seeded by
(data_seed, epoch), so batch ``index`` is a pure function of the seed and its arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.mnist import load_mnist
from ..models.outputs import SequenceOutput
from .base import Batch, check_positive, check_split
from .sequence_task import EpochOrder, SequenceTask

PIXELS = 28 * 28


class PixelMNISTTask(SequenceTask):
    """Sequential or permuted pixel MNIST over the given uint8 tensors (images (N, 28, 28) in
    0..255, labels (N,) in 0..9); see the module docstring for splits and the permutation."""
    name = "mnist"
    metric = "accuracy"
    higher_is_better = True
    input_size = 1
    output_size = 10
    head = "last"

    def __init__(self, images_train: Tensor, labels_train: Tensor, images_test: Tensor,
                 labels_test: Tensor, *, permuted: bool = False, data_seed: int = 1234,
                 valid_size: int = 5000, train_size: int = 0) -> None:
        if isinstance(data_seed, bool) or not isinstance(data_seed, int):
            raise TypeError(f"data_seed must be an int, got {data_seed!r}")
        if isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 0:
            raise ValueError(f"train_size must be a non-negative integer (0: all), got {train_size!r}")
        images_train = _flat_images("images_train", images_train, labels_train)
        images_test = _flat_images("images_test", images_test, labels_test)
        held = check_positive("valid_size", valid_size)
        available = images_train.shape[0] - held
        if available < 1:
            raise ValueError(f"valid_size ({held}) must leave training images (of {images_train.shape[0]})")
        if train_size > available:
            raise ValueError(f"train_size ({train_size}) exceeds the {available} training images left "
                             f"after holding out valid_size={held}")
        used = train_size or available
        self.permuted, self.data_seed = bool(permuted), data_seed
        self.permutation = (torch.randperm(PIXELS, generator=torch.Generator().manual_seed(data_seed))
                            if self.permuted else None)
        self._splits = {"train": (images_train[:used], labels_train[:used].long()),
                        "valid": (images_train[available:], labels_train[available:].long()),
                        "test": (images_test, labels_test.long())}
        self._order = EpochOrder(used, data_seed)

    @classmethod
    def from_source(cls, path: str | Path | None = None, *, cache_dir: str | Path | None = None,
                    download: bool = True, permuted: bool = False, data_seed: int = 1234,
                    valid_size: int = 5000, train_size: int = 0) -> PixelMNISTTask:
        """The task over MNIST read from ``path``, the cache or a download (rnnreg.data.mnist)."""
        data = load_mnist(path, cache_dir=cache_dir, download=download)
        return cls(data.train_images, data.train_labels, data.test_images, data.test_labels,
                   permuted=permuted, data_seed=data_seed, valid_size=valid_size, train_size=train_size)

    @property
    def train_size(self) -> int:
        return self._splits["train"][1].shape[0]

    def num_train_batches(self, batch_size: int) -> int:
        return self._order.num_batches(batch_size)

    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        chosen = self._order.indices(epoch, index, batch_size)
        images, labels = self._splits["train"]
        return self._batch(images[chosen], labels[chosen])

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        images, labels = self._splits[check_split(split)]
        check_positive("batch_size", batch_size)
        for start in range(0, labels.shape[0], batch_size):
            yield self._batch(images[start:start + batch_size], labels[start:start + batch_size])

    def forward(self, model: nn.Module, batch: Batch) -> SequenceOutput:
        return model(batch["x"])

    def loss(self, output: SequenceOutput, batch: Batch) -> Tensor:
        return F.cross_entropy(output.prediction, batch["y"])

    def score(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """Mean cross-entropy and accuracy (percent) over examples."""
        total_loss, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for batch in batches:
                logits = self.forward(model, batch).prediction  # (B, 10)
                total_loss += float(F.cross_entropy(logits, batch["y"], reduction="sum"))
                correct += int((logits.argmax(dim=-1) == batch["y"]).sum())
                count += batch["y"].shape[0]
        if count == 0:
            raise ValueError("score needs at least one batch")
        return {"loss": total_loss / count, "accuracy": 100.0 * correct / count}

    def describe(self) -> str:
        kind = "permuted pixel MNIST" if self.permuted else "sequential pixel MNIST"
        return f"{kind}, T=784, {self.train_size} training images"

    def _batch(self, images: Tensor, labels: Tensor) -> Batch:
        """uint8 (B, 784) images -> x (784, B, 1) in [0, 1], in the task's pixel order."""
        pixels = images.float() / 255.0  # (B, 784)
        if self.permutation is not None:
            pixels = pixels[:, self.permutation]
        return {"x": pixels.t().unsqueeze(-1).contiguous(), "y": labels}  # (784, B) -> (784, B, 1)


def _flat_images(name: str, images: Tensor, labels: Tensor) -> Tensor:
    """Check a split's tensors; images (N, 28, 28) uint8 -> (N, 784)."""
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or tuple(images.shape[1:]) != (28, 28):
        raise ValueError(f"{name} must be a uint8 tensor of shape (N, 28, 28), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"the labels of {name} must be a 1-d tensor of {images.shape[0]} labels, got "
                         f"{tuple(getattr(labels, 'shape', ()))}")
    if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) <= 9):
        raise ValueError(f"the labels of {name} must be digits 0-9")
    return images.reshape(images.shape[0], PIXELS)  # (N, 28, 28) -> (N, 784)
