"""DropConnect on named weights (regularizers/weight_drop.py; Wan et al. 2013, Merity et al. 2017
sec. 2): one mask per forward call, shared by every time step, gradients reach the raw weight.
The wrapper mechanics shared with WeightNoise are in test_reparametrize.py."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnreg.regularizers import WeightDrop, drop_weight
from rnnreg.regularizers.masks import dropout_mask

BAD_PROBS = [-0.1, 1.0, math.nan, "0.5"]


def _lstm_pair(seed: int = 0) -> tuple[nn.LSTM, torch.Tensor]:
    torch.manual_seed(seed)
    return nn.LSTM(3, 5).double(), torch.randn(6, 2, 3, dtype=torch.float64)


def test_weight_drop_matches_lstm_with_dropped_matrix() -> None:
    lstm, x = _lstm_pair()
    p = 0.6
    plain, _ = lstm(x)
    wd = WeightDrop(copy.deepcopy(lstm), ["weight_hh_l0"], p).train()
    torch.manual_seed(42)
    out, (h, c) = wd(x)
    torch.manual_seed(42)
    mask = dropout_mask(lstm.weight_hh_l0.shape, p, lstm.weight_hh_l0)
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(mask)
    ref_out, (ref_h, ref_c) = lstm(x)
    # One mask for the whole call: the plain LSTM uses one matrix at every step.
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-12)
    # h0 = 0, so W_hh does not act at step 0; every later step sees the dropped matrix.
    torch.testing.assert_close(out[0], plain[0], rtol=0, atol=1e-12)
    assert (out[1:] - plain[1:]).abs().max() > 1e-3


def test_weight_drop_new_mask_each_call() -> None:
    lstm, x = _lstm_pair(2)
    wd = WeightDrop(lstm, ["weight_hh_l0"], 0.5).train()
    torch.manual_seed(0)
    a, _ = wd(x)
    b, _ = wd(x)
    assert not torch.equal(a, b)


def test_weight_drop_gradient_reaches_raw_weight_zero_where_dropped() -> None:
    lstm, x = _lstm_pair(3)
    p = 0.5
    wd = WeightDrop(lstm, ["weight_hh_l0"], p).train()
    torch.manual_seed(11)
    out, _ = wd(x)
    out.pow(2).sum().backward()
    torch.manual_seed(11)
    mask = dropout_mask(lstm.weight_hh_l0.shape, p, lstm.weight_hh_l0)
    grad = lstm.weight_hh_l0.grad
    assert grad is not None
    assert torch.equal(grad == 0, mask == 0)
    assert lstm.weight_ih_l0.grad is not None and lstm.weight_ih_l0.grad.abs().sum() > 0


def test_weight_drop_identity_in_eval_and_at_zero_active_with_mc() -> None:
    lstm, x = _lstm_pair(4)
    ref = lstm(x)[0]
    wd = WeightDrop(lstm, ["weight_hh_l0", "weight_ih_l0"], 0.5).eval()
    assert torch.equal(wd(x)[0], ref)
    assert torch.equal(WeightDrop(lstm, ["weight_hh_l0"], 0.0).train()(x)[0], ref)
    wd.mc_dropout = True
    torch.manual_seed(0)
    assert not torch.equal(wd(x)[0], ref)


def test_weight_drop_emits_no_warning_on_cpu() -> None:
    lstm, x = _lstm_pair(5)
    wd = WeightDrop(lstm, ["weight_hh_l0"], 0.5).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wd(x)[0].sum().backward()


def test_weight_drop_dotted_name_and_drop_weight() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    wd = WeightDrop(model, ["0.weight"], 0.5).train()
    x = torch.randn(3, 4)
    torch.manual_seed(0)
    out = wd(x)
    torch.manual_seed(0)
    w = drop_weight(model[0].weight, 0.5, True)
    torch.testing.assert_close(out, F.linear(x, w, model[0].bias))
    assert drop_weight(w, 0.5, False) is w and drop_weight(w, 0.0, True) is w


@pytest.mark.parametrize("bad", BAD_PROBS)
def test_bad_probabilities_rejected(bad: object) -> None:
    lstm = nn.LSTM(2, 2)
    w = torch.ones(3, 3)
    for make in (lambda: WeightDrop(lstm, ["weight_hh_l0"], bad), lambda: drop_weight(w, bad, True)):
        with pytest.raises((ValueError, TypeError), match=r"^p must"):
            make()
