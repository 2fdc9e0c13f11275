"""Pixel MNIST: pixel order and scaling, the one fixed permutation, splits, epochs, the metric, a
tiny training run, and the real data where the shared data folder has it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import shared_data
from rnnreg.models.sequence_net import SequenceNet
from rnnreg.models.outputs import SequenceOutput
from rnnreg.tasks.mnist import PixelMNISTTask


pytestmark = pytest.mark.usefixtures("one_thread")


def fake_mnist(n_train: int = 30, n_test: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (n_train,), generator=g, dtype=torch.uint8),
            torch.randint(0, 256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (n_test,), generator=g, dtype=torch.uint8))


def make_task(**kw):
    return PixelMNISTTask(*fake_mnist(), **{"valid_size": 10, **kw})


def test_sequential_order_is_row_by_row_scaled_to_unit_interval():
    images, labels, test_images, _ = fake_mnist()
    task = make_task()
    batch = next(task.eval_batches("valid", 4))  # valid = the last 10 training images
    x, y = batch["x"], batch["y"]
    assert x.shape == (784, 4, 1) and x.dtype == torch.float32 and y.dtype == torch.long
    for step, (row, col) in ((0, (0, 0)), (27, (0, 27)), (28, (1, 0)), (783, (27, 27)), (400, (14, 8))):
        torch.testing.assert_close(x[step, :, 0], images[20:24, row, col].float() / 255)
    assert torch.equal(y, labels[20:24].long())
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    test_x = next(task.eval_batches("test", 12))["x"]
    torch.testing.assert_close(test_x[:, :, 0], test_images.reshape(12, 784).t().float() / 255)


def test_permutation_is_a_true_permutation_fixed_by_the_seed_and_shared_by_splits():
    sequential, permuted = make_task(data_seed=5), make_task(permuted=True, data_seed=5)
    perm = permuted.permutation
    # every pixel exactly once (the zoneout code draws with replacement and loses ~37% of them)
    assert torch.equal(perm.sort().values, torch.arange(784))
    assert not torch.equal(perm, torch.arange(784))
    assert torch.equal(perm, make_task(permuted=True, data_seed=5).permutation)
    assert not torch.equal(perm, make_task(permuted=True, data_seed=6).permutation)
    for split in ("valid", "test"):
        plain = next(sequential.eval_batches(split, 5))["x"]
        mixed = next(permuted.eval_batches(split, 5))["x"]
        assert torch.equal(mixed, plain[perm])
    assert torch.equal(permuted.train_batch(2, 1, 7)["x"], sequential.train_batch(2, 1, 7)["x"][perm])


def test_splits_hold_out_the_last_training_images():
    images, labels, _, test_labels = fake_mnist()
    task = make_task(valid_size=10)
    assert task.train_size == 20 and task.num_train_batches(6) == 4
    valid = torch.cat([b["y"] for b in task.eval_batches("valid", 3)])
    assert torch.equal(valid, labels[20:].long())
    assert torch.equal(torch.cat([b["y"] for b in task.eval_batches("test", 5)]), test_labels.long())
    small = make_task(valid_size=10, train_size=8)
    seen = torch.cat([small.train_batch(1, i, 3)["y"] for i in range(small.num_train_batches(3))])
    assert sorted(seen.tolist()) == sorted(labels[:8].tolist())


def test_an_epoch_visits_each_training_image_once_in_a_seeded_order():
    task = make_task(valid_size=10)
    images = fake_mnist()[0][:20].reshape(20, 784).float() / 255

    def epoch(number):
        xs = [task.train_batch(number, i, 6)["x"][:, :, 0].t() for i in range(task.num_train_batches(6))]
        return torch.cat(xs)  # (20, 784)

    first, second = epoch(1), epoch(2)
    key = lambda rows: sorted(map(tuple, rows.tolist()))  # noqa: E731
    assert key(first) == key(second) == key(images)
    assert not torch.equal(first, second)
    assert torch.equal(first, epoch(1))
    other_seed = PixelMNISTTask(*fake_mnist(), valid_size=10, data_seed=99)
    assert not torch.equal(other_seed.train_batch(1, 0, 20)["x"], task.train_batch(1, 0, 20)["x"])
    with pytest.raises(ValueError, match="index"):
        task.train_batch(1, 4, 6)


def test_score_is_accuracy_percent_and_cross_entropy_over_examples():
    task = make_task(valid_size=10)
    labels = torch.cat([b["y"] for b in task.eval_batches("valid", 10)])

    class Fixed(nn.Module):
        """Logits that favour the true class for the first 7 validation images, class+1 after."""
        def __init__(self):
            super().__init__()
            self.seen = 0

        def forward(self, x):
            y = labels[self.seen:self.seen + x.shape[1]]
            wrong = torch.arange(self.seen, self.seen + x.shape[1]) >= 7
            self.seen += x.shape[1]
            logits = torch.zeros(x.shape[1], 10)
            logits[torch.arange(x.shape[1]), (y + wrong.long()) % 10] = 2.0
            return SequenceOutput(logits, [], [])

    result = task.score(Fixed(), task.eval_batches("valid", 4))  # batches of 4, 4, 2
    assert result["accuracy"] == pytest.approx(70.0)
    # per example: right -> -log(e^2 / (e^2 + 9)), wrong -> -log(1 / (e^2 + 9))
    right, wrong = math.log(math.e ** 2 + 9) - 2, math.log(math.e ** 2 + 9)
    assert result["loss"] == pytest.approx((7 * right + 3 * wrong) / 10, rel=1e-5)


def test_loss_is_cross_entropy_of_the_prediction():
    task = make_task()
    batch = task.train_batch(1, 0, 5)
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(1))
    loss = task.loss(SequenceOutput(logits, [], []), batch)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, batch["y"])))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"valid_size": 30}, ValueError, "valid_size"),
    ({"train_size": 21}, ValueError, "train_size"),
    ({"train_size": -1}, ValueError, "train_size"),
    ({"data_seed": "1"}, TypeError, "data_seed"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_task(**kwargs)


def test_bad_tensors():
    images, labels, test_images, test_labels = fake_mnist()
    with pytest.raises(ValueError, match="images_train"):
        PixelMNISTTask(images.float(), labels, test_images, test_labels)
    with pytest.raises(ValueError, match="labels of images_test"):
        PixelMNISTTask(images, labels, test_images, test_labels[:3])
    with pytest.raises(ValueError, match="digits"):
        PixelMNISTTask(images, labels + 10, test_images, test_labels)


def test_class_attributes_and_describe():
    task = make_task(permuted=True)
    assert (task.name, task.metric, task.higher_is_better, task.input_size, task.output_size, task.head) == \
        ("mnist", "accuracy", True, 1, 10, "last")
    assert "permuted" in task.describe() and "20 training images" in task.describe()
    assert "sequential" in make_task().describe()


def test_tiny_lstm_learns_a_cue_at_the_end_of_the_sequence():
    # Class 1 images have a bright last row, class 0 images do not: read in the last 28 steps.
    n = 64
    labels = torch.arange(n) % 2
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[labels == 1, 27] = 255
    task = PixelMNISTTask(images, labels.to(torch.uint8), images[:8], labels[:8].to(torch.uint8),
                          valid_size=16, data_seed=0)
    torch.manual_seed(0)
    model = SequenceNet(task.input_size, task.output_size, head=task.head, cell="lstm", hidden_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    model.eval()
    before = task.score(model, task.eval_batches("valid", 16))
    model.train()
    for epoch in (1, 2, 3):
        for index in range(task.num_train_batches(16)):
            batch = task.train_batch(epoch, index, 16)
            loss = task.loss(task.forward(model, batch), batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    after = task.score(model, task.eval_batches("valid", 16))
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] == 100.0


def real_task(**kw) -> PixelMNISTTask:
    folder = shared_data() / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("shared MNIST files not found")
    return PixelMNISTTask.from_source(folder, download=False, **kw)


def test_real_mnist_splits():
    task = real_task(valid_size=10_000, train_size=0, permuted=True)
    assert task.train_size == 50_000 and task.num_train_batches(100) == 500
    assert sum(b["y"].shape[0] for b in task.eval_batches("valid", 5000)) == 10_000
    test = next(task.eval_batches("test", 1))
    assert test["x"].shape == (784, 1, 1) and int(test["y"]) == 7  # the test set's well-known first digit
    assert "permuted pixel MNIST" in task.describe()
