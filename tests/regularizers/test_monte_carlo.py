"""MC dropout (regularizers/monte_carlo.py; Gal & Ghahramani 2016): the ``mc_dropout`` flag, its
context manager, and mc_predict's mean and population variance with every flag restored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnreg.regularizers import LockedDropout, is_stochastic, mc_dropout, mc_predict, set_mc_dropout


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.drop = LockedDropout(0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.drop(self.lin(x)), None


class _Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * (self.calls - 1)


def test_set_mc_dropout_and_context_manager_restore() -> None:
    net = _Net().eval()
    assert not is_stochastic(net.drop)
    assert set_mc_dropout(net) is net and net.drop.mc_dropout and is_stochastic(net.drop)
    set_mc_dropout(net, False)
    with mc_dropout(net):
        assert net.drop.mc_dropout
    assert not net.drop.mc_dropout


def test_mc_predict_deterministic_zero_variance() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2).train()
    x = torch.randn(5, 4)
    mean, var = mc_predict(model, x, n_samples=5)
    assert torch.equal(var, torch.zeros(5, 2))
    torch.testing.assert_close(mean, model(x))
    assert model.training


def test_mc_predict_population_mean_and_variance() -> None:
    # samples 0, 1, 2, 3: mean 1.5, population variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    mean, var = mc_predict(_Counter(), torch.ones(2), n_samples=4)
    assert torch.equal(mean, torch.full((2,), 1.5))
    assert torch.equal(var, torch.full((2,), 1.25))


def test_mc_predict_stochastic_positive_variance_restores_state() -> None:
    torch.manual_seed(0)
    net = _Net().train()
    x = torch.randn(3, 8, 4)
    mean, var = mc_predict(net, x, n_samples=30)  # default fn takes output[0]
    assert mean.shape == var.shape == (3, 8, 3)
    assert var.max() > 0
    assert net.training and net.drop.training and not net.drop.mc_dropout
    net.eval()
    mc_predict(net, x, n_samples=2, fn=lambda out: out[0].sum(-1))
    assert not net.training and not net.drop.mc_dropout
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_samples"):
            mc_predict(net, x, n_samples=bad)
