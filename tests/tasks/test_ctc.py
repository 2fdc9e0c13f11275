"""The generated CTC task: generator invariants, determinism, batches, loss and score, a
bidirectional model with lengths, and a tiny training run whose loss goes down."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnreg.decoding import collapse
from rnnreg.models.sequence_net import SequenceNet
from rnnreg.models.outputs import SequenceOutput
from rnnreg.tasks.ctc import CTCTask
from rnnreg.tasks.ctc_base import pad_ctc_batch
from rnnreg.tasks.ctc_synthetic import ctc_example, duration_range, label_prototypes


pytestmark = pytest.mark.usefixtures("one_thread")


def small_task(**kw) -> CTCTask:
    options = dict(num_symbols=5, num_features=6, min_length=2, max_length=6, frames_per_label=4,
                   train_size=64, valid_size=24, test_size=16, data_seed=7)
    options.update(kw)
    return CTCTask(**options)


def nearest_classes(frames: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    return torch.cdist(frames, prototypes).argmin(dim=1)  # (T, F), (K + 1, F) -> (T,)


@pytest.mark.parametrize("frames_per_label", [1, 2, 4, 7])
def test_noise_free_frames_collapse_to_the_labels(frames_per_label):
    gen = torch.Generator().manual_seed(frames_per_label)
    prototypes = label_prototypes(4, 5, gen)
    shortest, longest = duration_range(frames_per_label)
    for _ in range(40):
        frames, labels = ctc_example(prototypes, gen, min_length=1, max_length=8,
                                     frames_per_label=frames_per_label, noise_std=0.0)
        assert 1 <= labels.shape[0] <= 8 and int(labels.min()) >= 1 and int(labels.max()) <= 4
        count = labels.shape[0]
        gap = frames_per_label // 2
        assert count * shortest <= frames.shape[0] <= count * longest + (count + 1) * max(gap, 1)
        classes = nearest_classes(frames, prototypes)
        assert torch.equal(frames, prototypes[classes])
        # Silence plays the blank: the collapse recovers the labels, repeats included, which
        # needs a silence frame between equal neighbours.
        assert collapse(classes.tolist(), blank=0) == labels.tolist()


def test_durations_follow_frames_per_label():
    assert duration_range(4) == (2, 6)
    assert duration_range(1) == (1, 1)
    with pytest.raises(ValueError, match="frames_per_label"):
        duration_range(0)


def test_batches_are_pure_functions_of_seed_and_arguments():
    a, b = small_task(), small_task()
    for key, value in a.train_batch(2, 3, 8).items():
        assert torch.equal(value, b.train_batch(2, 3, 8)[key])
    assert not torch.equal(a.train_batch(2, 3, 8)["inputs"], a.train_batch(3, 3, 8)["inputs"])
    # Example identity does not depend on the batch size: the first 4 of a batch of 8 are a batch of 4.
    big, small = a.train_batch(1, 0, 8), a.train_batch(1, 0, 4)
    assert torch.equal(big["input_lengths"][:4], small["input_lengths"])
    steps = int(small["input_lengths"].max())
    assert torch.equal(big["inputs"][:steps, :4], small["inputs"])
    other = small_task(data_seed=8)
    assert not torch.equal(other.prototypes, a.prototypes)
    assert a.num_train_batches(10) == 7


def test_batch_layout_and_padding():
    task = small_task()
    batch = task.train_batch(1, 0, 5)
    inputs, lengths = batch["inputs"], batch["input_lengths"]
    assert inputs.shape == (int(lengths.max()), 5, 6)
    assert batch["targets"].shape == (5, int(batch["target_lengths"].max()))
    for b in range(5):
        assert inputs[int(lengths[b]):, b].abs().sum() == 0
        assert (batch["targets"][b, int(batch["target_lengths"][b]):] == 0).all()
        assert (batch["targets"][b, : int(batch["target_lengths"][b])] >= 1).all()


def test_eval_sets_are_fixed_and_sized():
    task = small_task()
    valid = list(task.eval_batches("valid", 10))
    assert [int(b["input_lengths"].shape[0]) for b in valid] == [10, 10, 4]
    again = list(small_task().eval_batches("valid", 10))
    assert all(torch.equal(x["inputs"], y["inputs"]) for x, y in zip(valid, again))
    assert sum(int(b["input_lengths"].shape[0]) for b in task.eval_batches("test", 7)) == 16
    with pytest.raises(ValueError, match="split"):
        next(task.eval_batches("train", 4))


def test_loss_is_the_per_label_nll_averaged_over_sequences():
    task = small_task()
    batch = task.train_batch(1, 0, 6)
    scores = torch.randn(batch["inputs"].shape[0], 6, task.output_size, dtype=torch.float64)
    output = SequenceOutput(scores, [], [])
    per_sequence = F.ctc_loss(scores.log_softmax(-1), batch["targets"], batch["input_lengths"],
                              batch["target_lengths"], reduction="none")
    expected = (per_sequence / batch["target_lengths"]).mean()
    assert torch.allclose(task.loss(output, batch), expected)


def test_an_impossible_alignment_does_not_poison_the_batch():
    # 2 frames cannot carry 3 labels: torch gives inf for that sequence unless zero_infinity.
    task = small_task()
    batch = pad_ctc_batch([(torch.zeros(2, 6), torch.tensor([1, 2, 3])), (torch.zeros(5, 6), torch.tensor([4]))])
    scores = torch.zeros(5, 2, task.output_size, requires_grad=True)
    loss = task.loss(SequenceOutput(scores, [], []), batch)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()
    possible = F.ctc_loss(scores[:, 1:].log_softmax(-1), batch["targets"][1:], batch["input_lengths"][1:],
                          batch["target_lengths"][1:])
    assert torch.allclose(loss, possible / 2)  # the impossible one counts as 0 in the mean


class Oracle(nn.Module):
    """Reads noise-free frames back to their classes: a perfect CTC labeller (silence -> blank)."""

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__()
        self.prototypes = prototypes

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> SequenceOutput:
        steps, batch, _ = x.shape
        classes = nearest_classes(x.reshape(steps * batch, -1), self.prototypes)  # (T B, F) -> (T B,)
        scores = 20.0 * F.one_hot(classes, self.prototypes.shape[0]).float()
        return SequenceOutput(scores.reshape(steps, batch, -1), [], [])  # (T B, C) -> (T, B, C)


class Blank(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> SequenceOutput:
        scores = torch.zeros(x.shape[0], x.shape[1], self.classes)
        scores[..., 0] = 10.0
        return SequenceOutput(scores, [], [])


@pytest.mark.parametrize("beam_size", [1, 4])
def test_score_of_a_perfect_labeller_and_of_chance(beam_size):
    task = small_task(noise_std=0.0, beam_size=beam_size)
    perfect = task.score(Oracle(task.prototypes), task.eval_batches("valid", 7))
    assert perfect["ler"] == 0.0 and perfect["loss"] < 1e-3
    # A model that always says "blank" deletes every label: LER exactly 100 %.
    silent = task.score(Blank(task.output_size), task.eval_batches("valid", 7))
    assert silent["ler"] == pytest.approx(100.0)


def test_bidirectional_model_respects_lengths():
    task = small_task()
    torch.manual_seed(0)
    model = SequenceNet(task.input_size, task.output_size, head="every", bidirectional=True, hidden_size=8).eval()
    batch = task.train_batch(1, 0, 4)
    out = task.forward(model, batch).prediction
    for b in range(4):
        n = int(batch["input_lengths"][b])
        alone = model(batch["inputs"][:n, b:b + 1], lengths=torch.tensor([n])).prediction
        assert torch.allclose(out[:n, b], alone[:, 0], atol=1e-5)


def test_tiny_training_run_lowers_the_loss():
    torch.manual_seed(0)
    task = small_task(train_size=128, noise_std=0.3)
    model = SequenceNet(task.input_size, task.output_size, head="every", bidirectional=True, hidden_size=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    model.eval()
    before = task.score(model, task.eval_batches("valid", 24))
    model.train()
    for step in range(40):
        batch = task.train_batch(1 + step // 8, step % 8, 16)
        loss = task.loss(task.forward(model, batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    after = task.score(model, task.eval_batches("valid", 24))
    assert after["loss"] < 0.25 * before["loss"]
    assert after["ler"] < 0.75 * before["ler"]


def test_pad_ctc_batch_and_arguments():
    with pytest.raises(ValueError, match="examples"):
        pad_ctc_batch([])
    with pytest.raises(ValueError, match="min_length"):
        small_task(min_length=5, max_length=3)
    with pytest.raises(ValueError, match="noise_std"):
        small_task(noise_std=-1.0)
    with pytest.raises(ValueError, match="beam_size"):
        small_task(beam_size=0)
    with pytest.raises(ValueError, match="index"):
        small_task().train_batch(1, 8, 8)
    task = small_task()
    assert (task.input_size, task.output_size, task.head, task.metric) == (6, 6, "every", "ler")
