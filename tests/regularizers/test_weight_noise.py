"""Gaussian weight noise on named weights (regularizers/weight_noise.py; Graves 2011): one draw
per forward call, trained through, clean weights in eval. The wrapper mechanics shared with
WeightDrop are in test_reparametrize.py."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rnnreg.regularizers import WeightNoise, add_weight_noise


def _lstm_pair(seed: int = 0) -> tuple[nn.LSTM, torch.Tensor]:
    torch.manual_seed(seed)
    return nn.LSTM(3, 5).double(), torch.randn(6, 2, 3, dtype=torch.float64)


def test_weight_noise_matches_lstm_with_noisy_matrix_and_grad() -> None:
    lstm, x = _lstm_pair(6)
    std = 0.3
    ref_lstm = copy.deepcopy(lstm)
    wn = WeightNoise(lstm, ["weight_hh_l0"], std).train()
    torch.manual_seed(9)
    out, _ = wn(x)
    out.pow(2).sum().backward()
    torch.manual_seed(9)
    noisy = add_weight_noise(ref_lstm.weight_hh_l0.detach(), std, True)
    with torch.no_grad():
        ref_lstm.weight_hh_l0.copy_(noisy)
    ref_out, _ = ref_lstm(x)
    ref_out.pow(2).sum().backward()
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(lstm.weight_hh_l0.grad, ref_lstm.weight_hh_l0.grad)
    torch.testing.assert_close(out[0], ref_lstm(x)[0][0])  # step 0 independent of W_hh


def test_weight_noise_new_noise_each_call_identity_eval_and_zero() -> None:
    lstm, x = _lstm_pair(7)
    ref = lstm(x)[0]
    wn = WeightNoise(lstm, "weight_hh_l0", 0.1).train()
    torch.manual_seed(0)
    assert not torch.equal(wn(x)[0], wn(x)[0])
    assert torch.equal(wn.eval()(x)[0], ref)
    assert torch.equal(WeightNoise(lstm, "weight_hh_l0", 0.0).train()(x)[0], ref)
    wn.mc_dropout = True
    assert not torch.equal(wn(x)[0], ref)
    with pytest.raises(ValueError, match="std"):
        WeightNoise(lstm, "weight_hh_l0", -1.0)
    assert "std=0.1" in repr(wn)


def test_add_weight_noise_statistics() -> None:
    torch.manual_seed(10)
    w = torch.full((400, 500), 2.0)
    noise = add_weight_noise(w, 0.3, True) - w
    assert noise.mean().item() == pytest.approx(0.0, abs=0.01)
    assert noise.std().item() == pytest.approx(0.3, rel=0.02)
    assert add_weight_noise(w, 0.3, False) is w and add_weight_noise(w, 0.0, True) is w
