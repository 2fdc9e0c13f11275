"""RNNLanguageModel: shapes, sizes, identity-when-off against a hand-built torch.nn stack,
training with every regularizer, state chaining, MC dropout, and the AWD padding_idx trap."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnreg import penalties, set_mc_dropout
from rnnreg.models import LMOutput, RNNLanguageModel, SurprisalState

V, E, H = 13, 6, 8
CELLS = ("lstm", "gru", "rnn", "irnn")
TORCH_LAYERS = {"lstm": lambda i, h: nn.LSTM(i, h), "gru": lambda i, h: nn.GRU(i, h),
                "rnn": lambda i, h: nn.RNN(i, h), "irnn": lambda i, h: nn.RNN(i, h, nonlinearity="relu")}
# Every regularizer that must vanish in eval mode (zoneout is excluded: its eval form is the
# expectation, not the identity; Krueger et al. 2016).
EVAL_OFF = dict(embed_p=0.3, input_p=0.3, hidden_p=0.3, output_p=0.3, nonrecurrent_p=0.3, weight_p=0.3,
                recurrent_dropout=0.3, weight_noise_std=0.1)


def toks(steps: int = 7, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (steps, batch), generator=torch.Generator().manual_seed(seed))


def lm(**kw) -> RNNLanguageModel:
    kw = {"embedding_size": E, "hidden_size": H, "num_layers": 2, **kw}
    return RNNLanguageModel(V, **kw)


def hidden_h(entry):
    return entry[0] if isinstance(entry, tuple) else entry


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_for_every_cell(cell):
    model = lm(cell=cell, num_layers=3)
    out = model(toks(7, 3))
    assert isinstance(out, LMOutput) and out.logits.shape == (7, 3, V) and out.cells is None
    assert len(out.state) == len(out.raw) == len(out.dropped) == 3
    zero = model.init_state(3)
    for entry, init, raw, dropped in zip(out.state, zero, out.raw, out.dropped):
        parts = entry if cell == "lstm" else (entry,)
        assert isinstance(entry, tuple) == (cell == "lstm")
        assert all(p.shape == (1, 3, H) for p in parts)
        assert all(torch.count_nonzero(z) == 0 for z in (init if cell == "lstm" else (init,)))
        assert raw.shape == dropped.shape == (7, 3, H)


def test_tied_weights_share_storage_and_size_the_last_layer():
    model = lm(num_layers=3, tie_weights=True)
    assert model.decoder.weight is model.encoder.weight
    assert [layer.hidden_size for layer in model.layers] == [H, H, E]
    untied = lm(num_layers=3, hidden_sizes=(H, H, E))
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters()) == V * E
    out = model(toks())
    out.logits.sum().backward()
    # One parameter, two uses: its gradient is the embedding's plus the decoder's.
    untied.load_state_dict(model.state_dict())
    untied(toks()).logits.sum().backward()
    torch.testing.assert_close(model.encoder.weight.grad,
                               untied.encoder.weight.grad + untied.decoder.weight.grad)


def test_per_layer_sizes_chain():
    model = lm(num_layers=3, hidden_sizes=(5, 9, 4))
    assert [(l.input_size, l.hidden_size) for l in model.layers] == [(E, 5), (5, 9), (9, 4)]
    out = model(toks(4, 2))
    assert [r.shape[-1] for r in out.raw] == [5, 9, 4] and model.decoder.in_features == 4


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(tie_weights=True, hidden_sizes=(H, H)), ValueError, "embedding_size"),
    (dict(hidden_sizes=(H,)), ValueError, "hidden_sizes"),
    (dict(hidden_sizes=(H, 0)), ValueError, r"hidden_sizes\[1\]"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(cell="lstmx"), ValueError, "cell"),
    (dict(cell="gru", peepholes=True), TypeError, "peepholes applies to cell='lstm'"),
    (dict(cell="rnn", zoneout_c_p=0.1), TypeError, "zoneout_c_p"),
    (dict(cell="lstm", nonlinearity="relu"), TypeError, "cell='rnn'"),
    (dict(cell="irnn", nonlinearity="trec"), ValueError, "irnn"),
    (dict(init_range=0.0), ValueError, "init_range"),
    (dict(output_p=1.0), ValueError, "output_p"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        lm(**kwargs)


@pytest.mark.parametrize("cell", CELLS)
def test_eval_equals_a_hand_built_torch_stack(cell):
    torch.manual_seed(0)
    model = lm(cell=cell, num_layers=3, tie_weights=True, **EVAL_OFF).eval()
    tokens = toks()
    out = model(tokens)
    x = F.embedding(tokens, model.encoder.weight)
    for layer, entry in zip(model.layers, out.state):
        twin = TORCH_LAYERS[cell](layer.input_size, layer.hidden_size)
        twin.load_state_dict(layer.state_dict())
        x, hidden = twin(x)
        assert all(torch.equal(a, b) for a, b in zip(hidden if cell == "lstm" else (hidden,),
                                                      entry if cell == "lstm" else (entry,)))
    assert torch.equal(out.logits, F.linear(x, model.encoder.weight, model.decoder.bias))
    assert torch.equal(model(tokens).logits, out.logits)


@pytest.mark.slow  # trains 50 steps
def test_trains_with_every_regularizer_on():
    torch.manual_seed(0)
    pattern = torch.tensor([0, 3, 1, 4, 1, 5, 2, 6])
    tokens = pattern.repeat(3).view(-1, 1).repeat(1, 4)  # (24, 4): each column the repeated pattern
    model = RNNLanguageModel(8, embedding_size=12, hidden_size=16, num_layers=2, tie_weights=True,
                             embed_p=0.1, input_p=0.1, hidden_p=0.1, output_p=0.1, nonrecurrent_p=0.1,
                             weight_p=0.1, recurrent_dropout=0.1, zoneout_h_p=0.05, zoneout_c_p=0.05,
                             weight_noise_std=0.01, peepholes=True, forget_bias=1.0, return_cells=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)

    def nll() -> torch.Tensor:
        out = model(tokens[:-1])
        return F.cross_entropy(out.logits.reshape(-1, 8), tokens[1:].reshape(-1)), out

    model.eval()
    with torch.no_grad():
        before = nll()[0].item()
    model.train()
    for _ in range(50):
        loss, out = nll()
        loss = loss + penalties.ar(out.dropped[-1], 1.0) + penalties.tar(out.raw[-1], 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = nll()[0].item()
    assert after < 0.5 * before, (before, after)


def test_embedding_dropout_trains_the_last_row():
    # AWD-LSTM's embedded_dropout passes padding_idx=-1, which makes the LAST word type a padding
    # row that never receives a gradient; here it is an ordinary row that is sometimes dropped.
    model = lm(embed_p=0.5).train()
    tokens = torch.full((5, 2), V - 1)
    tokens[0, 0] = 0
    got = []
    for seed in range(12):
        torch.manual_seed(seed)
        model.zero_grad()
        model(tokens).logits.sum().backward()
        got.append(bool(model.encoder.weight.grad[V - 1].abs().sum() > 0))
        assert torch.count_nonzero(model.encoder.weight.grad[1:V - 1]) == 0  # unused rows
    assert any(got) and not all(got)


@pytest.mark.parametrize("cell", CELLS)
def test_two_windows_with_carried_state_equal_one_window(cell):
    extra = {"zoneout_c_p": 0.2} if cell == "lstm" else {}
    model = lm(cell=cell, zoneout_h_p=0.1, **extra, **EVAL_OFF).eval()
    tokens = toks(9, 3)
    whole = model(tokens, model.init_state(3))
    first = model(tokens[:4])
    second = model(tokens[4:], first.state)
    torch.testing.assert_close(torch.cat([first.logits, second.logits]), whole.logits)
    for a, b in zip(second.state, whole.state):
        torch.testing.assert_close(a, b)


def test_detach_state_cuts_the_graph_and_keeps_values():
    model = lm().train()
    state = model(toks()).state
    assert state[0][0].requires_grad
    cut = model.detach_state(state)
    assert isinstance(cut, list) and isinstance(cut[0], tuple)
    for a, b in zip(cut, state):
        assert not a[0].requires_grad and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("rate", ["embed_p", "input_p", "hidden_p", "output_p", "nonrecurrent_p", "weight_p"])
def test_mc_dropout_makes_eval_stochastic(rate):
    model = lm(**{rate: 0.5}).eval()
    tokens = toks()
    ref = model(tokens).logits
    assert torch.equal(model(tokens).logits, ref)
    set_mc_dropout(model, True)
    assert not torch.equal(model(tokens).logits, ref)
    set_mc_dropout(model, False)
    assert torch.equal(model(tokens).logits, ref)


def test_return_cells_gives_lstm_cell_sequences():
    model = lm(num_layers=3, tie_weights=True, return_cells=True).eval()
    out = model(toks(6, 2))
    assert [c.shape for c in out.cells] == [(6, 2, H), (6, 2, H), (6, 2, E)]
    for cells, (_, c_n) in zip(out.cells, out.state):
        torch.testing.assert_close(cells[-1:], c_n)
    plain = lm(num_layers=3, tie_weights=True)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(plain.eval()(toks(6, 2)).logits, out.logits)
    assert lm(cell="gru", return_cells=True)(toks()).cells is None


def test_raw_and_dropped_differ_only_in_training():
    model = lm(hidden_p=0.5, output_p=0.5).train()
    out = model(toks(6, 4))
    torch.testing.assert_close(out.logits, model.decoder(out.dropped[-1]))
    for raw, dropped in zip(out.raw, out.dropped):
        assert not torch.equal(raw, dropped)
        zeros = (dropped == 0) & (raw != 0)  # (T, B, H): the dropped units
        assert zeros.any() and torch.equal(zeros, zeros[:1].expand_as(zeros))  # locked over time
    out = model.eval()(toks(6, 4))
    assert all(torch.equal(r, d) for r, d in zip(out.raw, out.dropped))


def test_zaremba_dropout_draws_a_fresh_mask_every_step():
    out = lm(nonrecurrent_p=0.5).train()(toks(6, 4))
    zeros = (out.dropped[0] == 0) & (out.raw[0] != 0)  # (T, B, H)
    assert zeros.any() and not torch.equal(zeros, zeros[:1].expand_as(zeros))


def test_zoneout_keep_reaches_each_layer():
    model = lm(cell="gru").eval()
    tokens = toks(5, 3)
    start = [torch.randn(1, 3, H) for _ in range(2)]
    ones = torch.ones(5, 3, 1)
    out = model(tokens, start, zoneout_keep=ones)  # keep every old value: nothing updates
    for raw, h0, h_n in zip(out.raw, start, out.state):
        assert torch.equal(h_n, h0) and torch.equal(raw, h0.expand(5, 3, H))
    out = model(tokens, start, zoneout_keep=[ones, torch.zeros(5, 3, H)])
    assert torch.equal(out.state[0], start[0]) and not torch.equal(out.state[1], start[1])
    with pytest.raises(ValueError, match="zoneout_keep"):
        model(tokens, zoneout_keep=[ones])


def test_input_validation():
    model = lm()
    with pytest.raises(TypeError, match="tokens"):
        model(toks().float())
    with pytest.raises(ValueError, match="tokens"):
        model(toks()[:, 0])
    with pytest.raises(ValueError, match="state"):
        model(toks(), model.init_state(3)[:1])
    with pytest.raises(ValueError, match="state"):
        model(toks(), SurprisalState(model.init_state(3), None))  # a 2-tuple, but not per layer
