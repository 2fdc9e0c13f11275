"""The wrapper mechanics WeightDrop and WeightNoise share (regularizers/reparametrize.py): the
wrapped module is never modified, the state dict is the inner one under ``module.``, names are
checked, and wrappers nest (the inner one sees the outer one's replacement)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rnnreg.regularizers import WeightDrop, WeightNoise, add_weight_noise
from rnnreg.regularizers.masks import dropout_mask

WRAPPERS = [pytest.param(lambda module, weights: WeightDrop(module, weights, 0.5), id="WeightDrop"),
            pytest.param(lambda module, weights: WeightNoise(module, weights, 0.1), id="WeightNoise")]


def _lstm_pair(seed: int = 0) -> tuple[nn.LSTM, torch.Tensor]:
    torch.manual_seed(seed)
    return nn.LSTM(3, 5).double(), torch.randn(6, 2, 3, dtype=torch.float64)


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_wrapped_module_is_never_modified(wrap) -> None:
    lstm, x = _lstm_pair(2)
    plain = lstm(x)[0]
    before = {k: v.clone() for k, v in lstm.state_dict().items()}
    raw = lstm.weight_hh_l0
    wrapped = wrap(lstm, ["weight_hh_l0"]).train()
    torch.manual_seed(0)
    out = wrapped(x)[0]
    out.sum().backward()
    assert not torch.equal(out, plain)  # the call did run with a replaced weight
    assert lstm.weight_hh_l0 is raw and raw.grad is not None
    for k, v in lstm.state_dict().items():
        assert torch.equal(v, before[k])
    # After a wrapped call the bare LSTM still computes with its raw weights.
    assert torch.equal(lstm(x)[0], plain)


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_state_dict_is_the_inner_modules_with_a_module_prefix(wrap) -> None:
    lstm, x = _lstm_pair(4)
    ref = lstm(x)[0]
    wrapped = wrap(lstm, ["weight_hh_l0"])
    assert list(wrapped.state_dict()) == ["module." + k for k in lstm.state_dict()]
    fresh = wrap(nn.LSTM(3, 5).double(), ["weight_hh_l0"])
    fresh.module.load_state_dict(lstm.state_dict())  # a plain LSTM checkpoint
    assert torch.equal(fresh.eval()(x)[0], ref)
    again = wrap(nn.LSTM(3, 5).double(), ["weight_hh_l0"])
    again.load_state_dict(wrapped.state_dict())  # a wrapped one
    assert torch.equal(again.eval()(x)[0], ref)


def test_bad_weight_names_are_refused() -> None:
    lstm = nn.LSTM(2, 3)
    with pytest.raises(ValueError, match="weight_hh_l1.*available parameters: weight_ih_l0"):
        WeightDrop(lstm, ["weight_hh_l1"], 0.5)
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="running_mean"):
        WeightDrop(bn, ["running_mean"], 0.5)  # a buffer, not a Parameter
    with pytest.raises(ValueError, match="at least one"):
        WeightDrop(lstm, [], 0.5)


def test_nested_wrappers_compose() -> None:
    lstm, x = _lstm_pair(8)
    ref_lstm = copy.deepcopy(lstm)
    inner = WeightNoise(lstm, "weight_hh_l0", 0.1)
    outer = WeightDrop(inner, "module.weight_hh_l0", 0.5).train()
    torch.manual_seed(0)
    out, _ = outer(x)
    out.sum().backward()
    # The outer transform runs first and the inner one sees its result: W * mask + noise.
    torch.manual_seed(0)
    w = ref_lstm.weight_hh_l0.detach()
    mask = dropout_mask(w.shape, 0.5, w)
    with torch.no_grad():
        ref_lstm.weight_hh_l0.copy_(add_weight_noise(w * mask, 0.1, True))
    torch.testing.assert_close(out, ref_lstm(x)[0], rtol=0, atol=1e-12)
    grad = lstm.weight_hh_l0.grad
    assert grad is not None and torch.equal(grad == 0, mask == 0)
