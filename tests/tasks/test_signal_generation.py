"""Signal generation (Koutnik et al. 2014 sec. 4.1): the waveform, the NMSE metric, batches, training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnreg.models.clockwork_net import ClockworkNet
from rnnreg.models.sequence_net import SequenceNet
from rnnreg.models.outputs import SequenceOutput
from rnnreg.tasks.signal_generation import SignalGenerationTask, music_like_signal, nmse


def test_signal_is_a_pure_function_of_the_seed():
    a, b = SignalGenerationTask(96, data_seed=3), SignalGenerationTask(96, data_seed=3)
    assert torch.equal(a.signal, b.signal)
    assert not torch.allclose(a.signal, SignalGenerationTask(96, data_seed=4).signal)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(music_like_signal(50, g1), music_like_signal(50, g2))


@pytest.mark.parametrize("seed", [0, 1, 1234])
def test_signal_invariants(seed):
    s = SignalGenerationTask(320, data_seed=seed).signal
    assert s.shape == (320,) and s.dtype == torch.float32 and torch.isfinite(s).all()
    assert s.abs().max().item() == pytest.approx(1.0)  # peak-normalised
    assert s[0].item() == 0.0                           # every note starts from silence (attack ramp)
    assert s.var().item() > 0.01                        # not a near-constant


def test_nmse_by_hand():
    target = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1, 1)  # mean 0, variance 1
    assert nmse(torch.zeros_like(target), target).item() == pytest.approx(1.0)
    assert nmse(target + 0.5, target).item() == pytest.approx(0.25)
    assert nmse(target, target).item() == 0.0
    # Two sequences, each measured against its own mean: targets (0, 2) and (10, 14) have squared
    # deviations 1 + 1 and 4 + 4; errors of 1 everywhere give 4 / 10.
    two = torch.tensor([[0.0, 10.0], [2.0, 14.0]]).view(2, 2, 1)
    assert nmse(two + 1.0, two).item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="shape"):
        nmse(torch.zeros(3), torch.zeros(4))


class Constant(nn.Module):
    """Predicts a fixed value at every step (a model whose scores are known in closed form)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return SequenceOutput(torch.full_like(x, self.value), [x], [x])


def test_score_of_known_predictors():
    task = SignalGenerationTask(64, data_seed=5)
    s = task.signal.double()
    mean = Constant(float(s.mean()))
    scores = task.score(mean, task.eval_batches("valid", 8))
    assert scores["nmse"] == pytest.approx(1.0, rel=1e-5)
    assert scores["loss"] == pytest.approx(float(s.var(unbiased=False)), rel=1e-5)
    zero = task.score(Constant(0.0), task.eval_batches("test", 8))
    assert zero["mse"] == pytest.approx(float(s.pow(2).mean()), rel=1e-5)
    assert zero["nmse"] == pytest.approx(float(s.pow(2).mean() / s.var(unbiased=False)), rel=1e-5)


def test_batches_are_the_one_sequence():
    task = SignalGenerationTask(40, train_size=7, data_seed=2, input_value=0.5)
    assert task.num_train_batches(3) == 7
    batch = task.train_batch(2, 5, 3)
    assert batch["inputs"].shape == batch["targets"].shape == (40, 3, 1)
    assert torch.all(batch["inputs"] == 0.5)
    for b in range(3):
        assert torch.equal(batch["targets"][:, b, 0], task.signal)
    assert torch.equal(task.train_batch(9, 0, 3)["targets"], batch["targets"])
    (valid,), (test,) = list(task.eval_batches("valid", 10)), list(task.eval_batches("test", 10))
    assert valid["targets"].shape == (40, 1, 1) and torch.equal(valid["targets"], test["targets"])
    with pytest.raises(ValueError, match="split"):
        list(task.eval_batches("train", 1))
    for bad in (0, 1):
        with pytest.raises(ValueError, match="seq_len"):
            SignalGenerationTask(bad)


def test_baseline_sequence_net_fits_the_contract():
    task = SignalGenerationTask(30, data_seed=1)
    torch.manual_seed(0)
    model = SequenceNet(task.input_size, task.output_size, head=task.head, cell="rnn", hidden_size=5)
    batch = task.train_batch(1, 0, 2)
    out = task.forward(model, batch)
    assert out.prediction.shape == (30, 2, 1)
    assert task.loss(out, batch).dim() == 0


def test_tiny_clockwork_training_lowers_the_loss():
    task = SignalGenerationTask(48, data_seed=11)
    torch.manual_seed(0)
    model = ClockworkNet(1, 1, hidden_size=12, clockwork_periods=(1, 2, 4, 8), zoneout_h_p=0.05)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.eval()
    before = task.score(model, task.eval_batches("valid", 1))["nmse"]
    model.train()
    for step in range(60):
        batch = task.train_batch(1, step, 2)
        loss = task.loss(task.forward(model, batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    after = task.score(model, task.eval_batches("valid", 1))["nmse"]
    assert after < 0.5 * before
