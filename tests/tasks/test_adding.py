"""The adding problem: the generator's invariants, the fixed data sets, the metric, a training run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnreg.models.sequence_net import SequenceNet
from rnnreg.tasks.adding import AddingTask, adding_batch
from rnnreg.models.outputs import SequenceOutput


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Constant(nn.Module):
    """A stand-in model whose prediction for each example is given per batch by ``answer(x)``."""

    def __init__(self, answer) -> None:
        super().__init__()
        self.answer = answer

    def forward(self, x):
        return SequenceOutput(self.answer(x).unsqueeze(-1), [], [])  # (B,) -> (B, 1)


def test_batch_shapes_markers_and_target():
    x, y = adding_batch(64, 11, gen(0))
    assert x.shape == (11, 64, 2) and y.shape == (64,) and x.dtype == y.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers[:5].sum(0) == 1).all() and (markers[5:].sum(0) == 1).all()  # one per half (T // 2 = 5)
    torch.testing.assert_close(y, (values * markers).sum(0))


def test_shortest_sequence_marks_both_steps():
    x, y = adding_batch(8, 2, gen(1))
    assert (x[..., 1] == 1).all()
    torch.testing.assert_close(y, x[..., 0].sum(0))


def test_generator_determines_the_batch():
    a, b, c = adding_batch(4, 20, gen(5)), adding_batch(4, 20, gen(5)), adding_batch(4, 20, gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("seq_len", [1, 0, 2.0, True])
def test_bad_sequence_length(seq_len):
    with pytest.raises(ValueError, match="seq_len"):
        adding_batch(4, seq_len, gen(0))
    with pytest.raises(ValueError, match="seq_len"):
        AddingTask(seq_len=seq_len, train_size=4)


def test_constant_one_baseline_is_one_sixth_not_0_1767():
    # E[(U1 + U2 - 1)^2] = Var(U1) + Var(U2) = 2/12; sd of the squared error is sqrt(1/15 - 1/36).
    n = 200_000
    _, y = adding_batch(n, 2, gen(2))
    standard_error = math.sqrt(1 / 15 - 1 / 36) / math.sqrt(n)
    measured = float(((y - 1.0) ** 2).mean())
    assert abs(measured - 1 / 6) < 4 * standard_error
    assert abs(measured - 0.1767) > 15 * standard_error  # the literature's figure is not this task's
    assert abs(float(y.mean()) - 1.0) < 0.01  # 1.0 is the best constant answer


def test_training_epoch_visits_each_example_once_whatever_the_batch_size():
    task = AddingTask(seq_len=6, train_size=10, valid_size=3, test_size=3, data_seed=7)
    assert task.num_train_batches(3) == 4 and task.num_train_batches(10) == 1

    def epoch(number, batch_size):
        batches = [task.train_batch(number, i, batch_size) for i in range(task.num_train_batches(batch_size))]
        return torch.cat([b["y"] for b in batches]), torch.cat([b["x"] for b in batches], dim=1)

    y1, x1 = epoch(1, 3)
    y2, _ = epoch(2, 3)
    y3, _ = epoch(1, 4)
    assert x1.shape == (6, 10, 2) and len(set(y1.tolist())) == 10
    assert sorted(y1.tolist()) == sorted(y2.tolist()) == sorted(y3.tolist())  # one fixed training set
    assert y1.tolist() != y2.tolist()  # visited in another order


def test_batches_are_pure_functions_of_seed_and_arguments():
    a = AddingTask(seq_len=8, train_size=50, valid_size=5, test_size=5, data_seed=3)
    b = AddingTask(seq_len=8, train_size=50, valid_size=5, test_size=5, data_seed=3)
    b.train_batch(4, 2, 8)  # a different history must not matter
    for epoch, index in ((1, 0), (2, 3), (1, 6)):
        assert torch.equal(a.train_batch(epoch, index, 8)["x"], b.train_batch(epoch, index, 8)["x"])
    other = AddingTask(seq_len=8, train_size=50, valid_size=5, test_size=5, data_seed=4)
    assert not torch.equal(a.train_batch(1, 0, 8)["y"], other.train_batch(1, 0, 8)["y"])
    assert a.train_batch(1, 6, 8)["y"].shape == (2,)  # the short last batch
    with pytest.raises(ValueError, match="index"):
        a.train_batch(1, 7, 8)


def test_eval_sets_are_fixed_and_distinct():
    task = AddingTask(seq_len=8, train_size=20, valid_size=7, test_size=5, data_seed=3)
    valid = list(task.eval_batches("valid", 3))
    assert [b["y"].shape[0] for b in valid] == [3, 3, 1]
    again = torch.cat([b["y"] for b in task.eval_batches("valid", 7)])
    assert torch.equal(torch.cat([b["y"] for b in valid]), again)
    test = torch.cat([b["y"] for b in task.eval_batches("test", 5)])
    assert test.shape == (5,) and not torch.equal(test, again[:5])
    train = task.train_batch(1, 0, 20)["y"]
    assert not set(train.tolist()) & set(again.tolist())
    with pytest.raises(ValueError, match="split"):
        list(task.eval_batches("train", 3))


def test_score_averages_over_examples_and_reports_the_baseline():
    task = AddingTask(seq_len=8, train_size=4, valid_size=5, test_size=5, data_seed=9)
    y = torch.cat([b["y"] for b in task.eval_batches("valid", 5)])
    # A model that answers 1.0 in the first batch (2 examples) and 0.0 in the second (3).
    model = Constant(lambda x: torch.full((x.shape[1],), 1.0 if x.shape[1] == 2 else 0.0))
    result = task.score(model, _split_2_3(task))
    expected = float(torch.cat([(y[:2] - 1.0) ** 2, y[2:] ** 2]).mean())
    assert result["mse"] == pytest.approx(expected) and result["loss"] == result["mse"]
    assert result["baseline_mse"] == pytest.approx(float(((y - 1.0) ** 2).mean()))
    ones = task.score(Constant(lambda x: torch.ones(x.shape[1])), task.eval_batches("valid", 5))
    assert ones["mse"] == pytest.approx(ones["baseline_mse"])


def _split_2_3(task):
    batch = next(task.eval_batches("valid", 5))
    return [{k: v[:, :2] if k == "x" else v[:2] for k, v in batch.items()},
            {k: v[:, 2:] if k == "x" else v[2:] for k, v in batch.items()}]


def test_loss_is_mean_squared_error_of_the_last_step_prediction():
    task = AddingTask(seq_len=8, train_size=6, valid_size=2, test_size=2)
    batch = task.train_batch(1, 0, 6)
    prediction = torch.linspace(0, 2, 6).unsqueeze(-1)  # (B, 1)
    loss = task.loss(SequenceOutput(prediction, [], []), batch)
    assert loss.shape == () and float(loss) == pytest.approx(float(F.mse_loss(prediction[:, 0], batch["y"])))


@pytest.mark.parametrize("kwargs, error", [({"train_size": 0}, ValueError), ({"valid_size": 0}, ValueError),
                                           ({"data_seed": 1.5}, TypeError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        AddingTask(**{"seq_len": 4, "train_size": 4, **kwargs})


def test_describe_and_class_attributes():
    task = AddingTask(seq_len=30, train_size=4, valid_size=2, test_size=2)
    assert "T=30" in task.describe()
    assert (task.name, task.metric, task.higher_is_better, task.input_size, task.output_size, task.head) == \
        ("adding", "mse", False, 2, 1, "last")


@pytest.mark.slow
def test_small_lstm_learns_to_beat_the_constant_baseline():
    torch.manual_seed(0)
    task = AddingTask(seq_len=6, train_size=250 * 32, valid_size=256, test_size=16, data_seed=1)
    model = SequenceNet(task.input_size, task.output_size, head=task.head, cell="lstm", hidden_size=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for index in range(task.num_train_batches(32)):
        batch = task.train_batch(1, index, 32)
        loss = task.loss(task.forward(model, batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    result = task.score(model, task.eval_batches("valid", 256))
    assert result["mse"] < 0.25 * result["baseline_mse"]
