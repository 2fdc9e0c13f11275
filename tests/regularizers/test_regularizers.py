"""Tests for locked/embedding dropout, weight drop, weight noise and MC dropout."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnreg.regularizers import (
    Embedding,
    LockedDropout,
    WeightDrop,
    WeightNoise,
    add_weight_noise,
    drop_weight,
    embedding_dropout,
    is_stochastic,
    locked_dropout,
    mc_dropout,
    mc_predict,
    set_mc_dropout,
)
from rnnreg.regularizers.masks import dropout_mask

BAD_PROBS = [-0.1, 1.0, math.nan, "0.5"]


# ---------------------------------------------------------------- locked dropout

def test_locked_mask_constant_over_time_and_varies_over_batch_and_features() -> None:
    torch.manual_seed(0)
    p = 0.5
    out = locked_dropout(torch.ones(7, 16, 32), p, training=True)
    assert torch.equal(out, out[:1].expand_as(out))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # scale 1/(1-p)
    assert not torch.equal(out[0, 0], out[0, 1])  # batch entries get their own masks
    assert not torch.equal(out[0, :, 0], out[0, :, 1])  # features too


def test_locked_batch_first_and_trailing_dims() -> None:
    torch.manual_seed(1)
    x = torch.ones(4, 6, 3, 5, dtype=torch.float64)
    out = locked_dropout(x, 0.25, training=True, batch_first=True)
    assert torch.equal(out, out[:, :1].expand_as(out))  # constant along dim 1 (time)
    assert not torch.equal(out[0], out[1])
    assert set(out.unique().tolist()) <= {0.0, 1 / 0.75}
    tm = locked_dropout(torch.ones(5, 4, 3, 2), 0.5, training=True)
    assert torch.equal(tm, tm[:1].expand_as(tm))


def test_locked_scale_preserves_expectation() -> None:
    torch.manual_seed(2)
    out = locked_dropout(torch.ones(1, 200, 500), 0.3, training=True)
    assert out.mean().item() == pytest.approx(1.0, abs=0.02)
    assert (out == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)


def test_locked_identity_at_zero_and_in_eval_active_with_mc() -> None:
    x = torch.randn(5, 3, 4)
    assert locked_dropout(x, 0.0, training=True) is x
    m = LockedDropout(0.5)
    m.eval()
    assert m(x) is x
    assert LockedDropout(0.0)(x) is x
    torch.manual_seed(3)
    m.mc_dropout = True
    assert not torch.equal(m(x), x)
    assert "p=0.5" in repr(m) and "mc_dropout=True" in repr(m)


def test_locked_training_mode_samples() -> None:
    torch.manual_seed(4)
    m = LockedDropout(0.5).train()
    x = torch.ones(3, 8, 8)
    assert not torch.equal(m(x), x)
    assert not torch.equal(m(x), m(x))


# ---------------------------------------------------------------- embedding dropout

def test_embedding_drops_whole_types_and_scales_kept() -> None:
    torch.manual_seed(5)
    V, D, p = 40, 6, 0.5
    emb = Embedding(V, D, embed_p=p).train()
    idx = torch.arange(V).repeat(3, 1)  # (3, V): every type occurs at three positions
    out = emb(idx)  # (3, V, D)
    dropped = kept = 0
    for v in range(V):
        rows = out[:, v]  # (3, D): the three occurrences of type v
        if torch.equal(rows, torch.zeros_like(rows)):
            dropped += 1
        else:
            torch.testing.assert_close(rows, (emb.weight[v] / (1 - p)).expand(3, D))
            kept += 1
    assert dropped > 0 and kept > 0


def test_embedding_last_row_gets_gradient() -> None:
    V, D, p = 10, 4, 0.2
    emb = Embedding(V, D, embed_p=p).train()
    seed = next(s for s in range(100)
                if torch.manual_seed(s) and dropout_mask((V, 1), p, emb.weight)[-1] != 0)
    torch.manual_seed(seed)
    emb(torch.tensor([[V - 1, 1], [V - 1, 2]])).sum().backward()
    torch.testing.assert_close(emb.weight.grad[-1], torch.full((D,), 2 / (1 - p)))
    plain = Embedding(V, D)
    plain(torch.tensor([V - 1])).sum().backward()
    assert torch.equal(plain.weight.grad[-1], torch.ones(D))


def test_embedding_padding_idx_respected() -> None:
    torch.manual_seed(6)
    emb = Embedding(12, 5, padding_idx=0, embed_p=0.5).train()
    idx = torch.tensor([[0, 3, 0], [4, 0, 5]])
    out = emb(idx)
    assert torch.equal(out[idx == 0], torch.zeros(3, 5))
    out.sum().backward()
    assert torch.equal(emb.weight.grad[0], torch.zeros(5))


def test_embedding_state_dict_matches_nn_embedding() -> None:
    ref = nn.Embedding(9, 3, padding_idx=2)
    emb = Embedding(9, 3, padding_idx=2, embed_p=0.4)
    assert list(emb.state_dict()) == list(ref.state_dict()) == ["weight"]
    emb.load_state_dict(ref.state_dict())
    assert torch.equal(emb.weight, ref.weight)
    ref.load_state_dict(emb.state_dict())
    assert "embed_p=0.4" in repr(emb)


def test_embedding_identity_in_eval_and_at_zero_mc_in_eval() -> None:
    torch.manual_seed(7)
    emb = Embedding(20, 4, embed_p=0.5).eval()
    idx = torch.randint(0, 20, (6, 3))
    expected = F.embedding(idx, emb.weight)
    assert torch.equal(emb(idx), expected)
    assert torch.equal(embedding_dropout(emb.weight, idx, 0.0, True), expected)
    no_drop = Embedding(20, 4).train()
    assert torch.equal(no_drop(idx), F.embedding(idx, no_drop.weight))
    emb.mc_dropout = True
    assert not torch.equal(emb(idx), expected)


# ---------------------------------------------------------------- weight drop

def _lstm_pair(seed: int = 0) -> tuple[nn.LSTM, torch.Tensor]:
    torch.manual_seed(seed)
    return nn.LSTM(3, 5).double(), torch.randn(6, 2, 3, dtype=torch.float64)


def test_weight_drop_matches_lstm_with_dropped_matrix() -> None:
    lstm, x = _lstm_pair()
    p = 0.6
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


def test_weight_drop_step0_unchanged_later_steps_changed() -> None:
    lstm, x = _lstm_pair(1)
    plain, _ = lstm(x)
    wd = WeightDrop(lstm, "weight_hh_l0", 0.9).train()
    torch.manual_seed(0)
    out, _ = wd(x)
    # h0 = 0, so W_hh does not act at step 0.
    torch.testing.assert_close(out[0], plain[0], rtol=0, atol=1e-12)
    assert (out[1:] - plain[1:]).abs().max() > 1e-3


def test_weight_drop_new_mask_each_call_and_module_untouched() -> None:
    lstm, x = _lstm_pair(2)
    before = {k: v.clone() for k, v in lstm.state_dict().items()}
    wd = WeightDrop(lstm, ["weight_hh_l0"], 0.5).train()
    torch.manual_seed(0)
    a, _ = wd(x)
    b, _ = wd(x)
    assert not torch.equal(a, b)
    assert isinstance(lstm.weight_hh_l0, nn.Parameter)
    for k, v in lstm.state_dict().items():
        assert torch.equal(v, before[k])
    # After a wrapped call the bare LSTM still computes with its raw weights.
    torch.testing.assert_close(lstm(x)[0], WeightDrop(lstm, ["weight_hh_l0"], 0.5).eval()(x)[0])


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


def test_weight_drop_identity_in_eval_and_at_zero_state_dict() -> None:
    lstm, x = _lstm_pair(4)
    ref = lstm(x)[0]
    wd = WeightDrop(lstm, ["weight_hh_l0", "weight_ih_l0"], 0.5).eval()
    assert torch.equal(wd(x)[0], ref)
    assert torch.equal(WeightDrop(lstm, ["weight_hh_l0"], 0.0).train()(x)[0], ref)
    assert list(wd.state_dict()) == ["module." + k for k in lstm.state_dict()]
    fresh = WeightDrop(nn.LSTM(3, 5).double(), ["weight_hh_l0"], 0.5)
    fresh.module.load_state_dict(lstm.state_dict())
    assert torch.equal(fresh.eval()(x)[0], ref)
    wd.mc_dropout = True
    torch.manual_seed(0)
    assert not torch.equal(wd(x)[0], ref)


def test_weight_drop_emits_no_warning_on_cpu() -> None:
    lstm, x = _lstm_pair(5)
    wd = WeightDrop(lstm, ["weight_hh_l0"], 0.5).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wd(x)[0].sum().backward()


def test_weight_drop_bad_names() -> None:
    lstm = nn.LSTM(2, 3)
    with pytest.raises(ValueError, match="weight_hh_l1.*available parameters: weight_ih_l0"):
        WeightDrop(lstm, ["weight_hh_l1"], 0.5)
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="running_mean"):
        WeightDrop(bn, ["running_mean"], 0.5)  # a buffer, not a Parameter
    with pytest.raises(ValueError, match="at least one"):
        WeightDrop(lstm, [], 0.5)


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


# ---------------------------------------------------------------- weight noise

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
    assert list(wn.state_dict()) == ["module." + k for k in lstm.state_dict()]
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


def test_nested_wrappers_compose() -> None:
    lstm, x = _lstm_pair(8)
    inner = WeightNoise(lstm, "weight_hh_l0", 0.1)
    outer = WeightDrop(inner, "module.weight_hh_l0", 0.5).train()
    torch.manual_seed(0)
    out, _ = outer(x)
    out.sum().backward()
    assert lstm.weight_hh_l0.grad is not None


# ---------------------------------------------------------------- MC dropout

class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.drop = LockedDropout(0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.drop(self.lin(x)), None


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


class _Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * (self.calls - 1)


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


# ---------------------------------------------------------------- bad rates

@pytest.mark.parametrize("bad", BAD_PROBS)
def test_bad_probabilities_rejected(bad: object) -> None:
    lstm = nn.LSTM(2, 2)
    w = torch.ones(3, 3)
    cases = [
        (lambda: LockedDropout(bad), "p"),
        (lambda: locked_dropout(w, bad, True), "p"),
        (lambda: Embedding(4, 2, embed_p=bad), "embed_p"),
        (lambda: embedding_dropout(w, torch.tensor([0]), bad, True), "p"),
        (lambda: WeightDrop(lstm, ["weight_hh_l0"], bad), "p"),
        (lambda: drop_weight(w, bad, True), "p"),
    ]
    for make, name in cases:
        with pytest.raises((ValueError, TypeError), match=rf"^{name} must"):
            make()
