"""SurprisalZoneoutLM (Rocki 2016): it differs from RNNLanguageModel only through the keep signal
derived from its own previous predictions; training samples that signal, eval uses it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import rnnreg.layers.base as layer_base
from rnnreg.models import RNNLanguageModel, SurprisalState, SurprisalZoneoutLM

V, E, H = 11, 6, 8
SIZES = dict(embedding_size=E, hidden_size=H, num_layers=2)


def toks(steps: int = 6, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (steps, batch), generator=torch.Generator().manual_seed(seed))


def pair(temperature: float = 2.0, **kw) -> tuple[SurprisalZoneoutLM, RNNLanguageModel]:
    """A surprisal model and a plain model with the same weights."""
    torch.manual_seed(0)
    model = SurprisalZoneoutLM(V, temperature=temperature, **SIZES, **kw)
    plain = RNNLanguageModel(V, **SIZES, **kw)
    plain.load_state_dict(model.state_dict())
    return model, plain


def keep_from(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, first: float) -> torch.Tensor:
    """keep_t = exp(-s_t / temperature), s_t = -log softmax(logits_{t-1})[x_t], s_0 = first: (T, B, 1)."""
    logp = F.log_softmax(logits[:-1], -1).gather(-1, tokens[1:, :, None])  # (T-1, B, 1)
    s = torch.cat([torch.full_like(logp[:1], first), -logp])  # (T, B, 1)
    return torch.exp(-s / temperature)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_equals_the_plain_model_fed_its_own_keep_signal(cell):
    model, plain = pair(cell=cell)
    tokens = toks()
    out = model.eval()(tokens)
    keep = keep_from(out.logits, tokens, 2.0, math.log(V))
    ref = plain.eval()(tokens, zoneout_keep=keep)
    torch.testing.assert_close(out.logits, ref.logits)
    for a, b in zip(out.raw, ref.raw):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(out.state.hidden, ref.state)


def test_zero_keep_is_the_plain_model():
    model, plain = pair(temperature=1e-30, return_cells=True)  # exp(-s / 1e-30) == 0 for any s > 0
    tokens = toks()
    out, ref = model.eval()(tokens), plain.eval()(tokens)
    torch.testing.assert_close(out.logits, ref.logits)
    torch.testing.assert_close(out.cells, ref.cells)


def capture_keeps(model: SurprisalZoneoutLM) -> list:
    seen = []
    for layer in model.layers:
        layer.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["zoneout_keep"]),
                                        with_kwargs=True)
    return seen


def test_training_samples_the_keep_signal_and_eval_uses_it():
    torch.manual_seed(1)
    model = SurprisalZoneoutLM(V, temperature=math.log(V) / math.log(2), embedding_size=E,
                               hidden_size=64, num_layers=2)  # keep = 1/2 at the first step
    seen = capture_keeps(model)
    model.train()(toks(1, 64))
    masks = torch.stack(seen)  # (layers, 1, B, H)
    assert masks.shape == (2, 1, 64, 64) and set(masks.unique().tolist()) == {0.0, 1.0}
    assert abs(masks.mean().item() - 0.5) < 0.03  # Bernoulli(1/2): mean of 8192 draws
    seen.clear()
    tokens = toks(5, 4)
    out = model.eval()(tokens)
    expected = keep_from(out.logits, tokens, model.temperature, math.log(V))  # (T, B, 1)
    for t in range(5):
        for layer in range(2):
            torch.testing.assert_close(seen[2 * t + layer], expected[t:t + 1])


def test_gradients_reach_every_parameter():
    model = SurprisalZoneoutLM(V, tie_weights=True, embed_p=0.1, input_p=0.1, hidden_p=0.1,
                               output_p=0.1, nonrecurrent_p=0.1, weight_p=0.2, recurrent_dropout=0.1,
                               weight_noise_std=0.01, peepholes=True, **SIZES).train()
    tokens = toks()
    out = model(tokens[:-1])
    F.cross_entropy(out.logits.reshape(-1, V), tokens[1:].reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_chained_windows_equal_one_window(cell):
    model = pair(cell=cell)[0].eval()
    tokens = toks(8, 3)
    whole = model(tokens)
    first = model(tokens[:3])
    second = model(tokens[3:], first.state)
    torch.testing.assert_close(torch.cat([first.logits, second.logits]), whole.logits)
    torch.testing.assert_close(second.state.logits, whole.state.logits)
    # The carried prediction matters: forgetting it changes the first step of the next window.
    fresh = model(tokens[3:], SurprisalState(first.state.hidden, None))
    assert not torch.allclose(fresh.logits[0], second.logits[0])
    cut = model.detach_state(first.state)
    assert isinstance(cut, SurprisalState) and torch.equal(cut.logits, first.state.logits)
    plain = model(tokens[3:], tuple(first.state))  # as read back from a checkpoint
    torch.testing.assert_close(plain.logits, second.logits)


def test_per_window_masks_stay_fixed_across_steps(monkeypatch):
    recorded = []

    def recording(weight, p, training):
        out = layer_base_drop(weight, p, training)
        recorded.append(out.detach().clone())
        return out

    layer_base_drop = layer_base.drop_weight
    monkeypatch.setattr(layer_base, "drop_weight", recording)
    model = SurprisalZoneoutLM(V, embed_p=0.5, weight_p=0.5, **SIZES).train()
    embedded = []
    model.encoder.register_forward_hook(lambda m, args, out: embedded.append(out))
    tokens = torch.arange(6).repeat(5, 1)  # (5, 6): each sequence repeats one token
    model(tokens)
    assert all(torch.equal(e, embedded[0]) for e in embedded)  # one embedding-dropout mask
    assert (embedded[0] == 0).all(-1).any()  # ... that drops some word types
    for layer in range(2):  # one weight-drop mask per layer, not one per step
        per_step = recorded[layer::2]
        assert len(per_step) == 5 and all(torch.equal(w, per_step[0]) for w in per_step)
    first_window = recorded[:2]
    recorded.clear()
    model(tokens)  # a new window draws new masks
    assert not any(torch.equal(a, b) for a, b in zip(recorded[:2], first_window))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(temperature=0.0), ValueError, "temperature"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(initial_surprisal=-0.5), ValueError, "initial_surprisal"),
    (dict(zoneout_h_p=0.1), ValueError, "zoneout_h_p"),
    (dict(zoneout_c_p=0.1), ValueError, "temperature"),
    (dict(recurrent_dropout=0.2, recurrent_dropout_mode="semeniuta"), ValueError, "semeniuta"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        SurprisalZoneoutLM(V, **SIZES, **kwargs)


def test_forward_refuses_outside_keep_and_foreign_state():
    model, plain = pair()
    with pytest.raises(TypeError, match="zoneout_keep"):
        model(toks(), zoneout_keep=torch.ones(6, 3, 1))
    with pytest.raises(ValueError, match="SurprisalState"):
        model(toks(), plain.init_state(3))
    with pytest.raises(ValueError, match="SurprisalState"):
        model(toks(), tuple(plain.init_state(3)))  # two LSTM layers: a 2-tuple of (h, c) pairs
    assert model.init_state(3).logits is None
