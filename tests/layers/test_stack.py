"""RecurrentStack: locked masks on the connections, fresh Zaremba masks, identity in eval,
bidirectional widths, states in and out, pinned seeds, and the models' unchanged state-dict keys."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnreg
from rnnreg.layers.stack import RecurrentStack, StackOutput, layer_sizes
from rnnreg.models import RNNLanguageModel
from rnnreg.models.seq2seq import Seq2Seq
from rnnreg.models.sequence_net import SequenceNet

I, T, B = 3, 6, 4
CELLS = ("lstm", "gru", "rnn", "irnn")

pytestmark = pytest.mark.usefixtures("one_thread")


def stack(cell: str = "lstm", sizes=(5, 4), **kw) -> RecurrentStack:
    torch.manual_seed(0)
    return RecurrentStack(cell, I, list(sizes), **kw)


def inputs(steps: int = T, batch: int = B, seed: int = 1) -> torch.Tensor:
    return torch.randn(steps, batch, I, generator=torch.Generator().manual_seed(seed))


def layer_inputs(model: RecurrentStack) -> list:
    """What each layer reads, recorded by a forward pre-hook."""
    seen = []
    for layer in model:
        layer.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    return seen


def dropped_units(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return (after == 0) & (before != 0)  # (T, B, W)


def test_locked_masks_are_shared_by_every_step():
    model = stack(input_p=0.5, hidden_p=0.5, output_p=0.5).train()
    x = inputs().abs() + 0.1  # no zeros of its own
    seen = layer_inputs(model)
    out = model(x)
    pairs = [(x, seen[0]), (out.raw[0], out.dropped[0]), (out.raw[1], out.dropped[1])]
    for before, after in pairs:
        zeros = dropped_units(before, after)
        assert zeros.any() and torch.equal(zeros, zeros[:1].expand_as(zeros))
    assert torch.equal(seen[1], out.dropped[0])


def test_nonrecurrent_p_draws_a_fresh_mask_every_step():
    out = stack(nonrecurrent_p=0.5).train()(inputs())
    for raw, dropped in zip(out.raw, out.dropped):
        zeros = dropped_units(raw, dropped)
        assert zeros.any() and not torch.equal(zeros, zeros[:1].expand_as(zeros))


@pytest.mark.parametrize("cell", CELLS)
def test_eval_is_the_identity_and_equals_the_layers_chained(cell):
    model = stack(cell, input_p=0.3, hidden_p=0.3, output_p=0.3, nonrecurrent_p=0.3, weight_p=0.3).eval()
    x = inputs()
    out = model(x)
    assert isinstance(out, StackOutput) and out.cells is None and torch.equal(out.output, out.dropped[-1])
    h = x
    for layer, raw, dropped, final in zip(model, out.raw, out.dropped, out.states):
        h, state = layer(h)
        assert torch.equal(h, raw) and torch.equal(raw, dropped)
        for a, b in zip(state if cell == "lstm" else (state,), final if cell == "lstm" else (final,)):
            assert torch.equal(a, b)


def test_mc_dropout_keeps_the_connections_stochastic_in_eval():
    model = stack(hidden_p=0.5).eval()
    x = inputs()
    assert torch.equal(model(x).output, model(x).output)
    rnnreg.set_mc_dropout(model, True)
    assert not torch.equal(model(x).output, model(x).output)


def test_bidirectional_widths():
    model = stack("gru", sizes=(5, 4), bidirectional=True, hidden_p=0.2).train()
    assert [(layer.input_size, layer.hidden_size) for layer in model] == [(I, 5), (10, 4)]
    assert model.widths() == [10, 8] and model.widths(include_input=True) == [I, 10, 8]
    assert [m.shape for m in model.draw_masks(B) if m is not None] == [(1, B, 10)]
    out = model(inputs(), lengths=torch.tensor([6, 5, 2, 1]))
    assert [r.shape for r in out.raw] == [d.shape for d in out.dropped] == [(T, B, 10), (T, B, 8)]
    assert [s.shape for s in out.states] == [(2, B, 5), (2, B, 4)]
    assert torch.all(out.raw[0][2:, 2] == 0)  # padding past a sequence's length


@pytest.mark.parametrize("cell", CELLS)
def test_states_in_and_out_equal_one_chained_run(cell):
    extra = {"zoneout_c_p": 0.2} if cell == "lstm" else {}
    model = stack(cell, zoneout_h_p=0.1, **extra).eval()  # zoneout's eval form: its expectation
    x = inputs(9)
    whole = model(x)
    first = model(x[:4])
    second = model(x[4:], first.states)
    for a, b, c in zip(first.raw, second.raw, whole.raw):
        torch.testing.assert_close(torch.cat([a, b]), c)
    for a, b in zip(second.states, whole.states):
        torch.testing.assert_close(a, b)
    assert model(x, [None, None]).output.equal(whole.output)


def test_seeds_and_masks_pin_one_calls_draws():
    model = stack(input_p=0.5, hidden_p=0.5, output_p=0.5, weight_p=0.5, recurrent_dropout=0.3).train()
    x = inputs()
    masks = model.draw_masks(B)
    rng = torch.get_rng_state()
    first = model(x, seeds=[11, 12], masks=masks).output
    # Every draw ran under a pinned seed: the caller's random stream has not moved.
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(model(x, seeds=[11, 12], masks=masks).output, first)
    assert not torch.equal(model(x, seeds=[11, 13], masks=masks).output, first)
    assert not torch.equal(model(x, seeds=[11, 12]).output, first)  # new connection masks


def test_drop_output_false_leaves_the_last_output_alone():
    model = stack(hidden_p=0.5, nonrecurrent_p=0.5, drop_output=False).train()
    out = model(inputs())
    assert torch.equal(out.output, out.raw[-1]) and not torch.equal(out.dropped[0], out.raw[0])
    assert model.draw_masks(B)[-1] is None
    with pytest.raises(ValueError, match="drop_output"):
        stack(output_p=0.1, drop_output=False)


def test_return_cells_gives_lstm_cell_sequences_only():
    out = stack(return_cells=True).eval()(inputs())
    assert [c.shape for c in out.cells] == [(T, B, 5), (T, B, 4)]
    for cells, (_, c_n) in zip(out.cells, out.states):
        torch.testing.assert_close(cells[-1:], c_n)
    assert stack("gru", return_cells=True)(inputs()).cells is None


def test_state_dict_keys_are_the_layers_and_the_models_are_unchanged():
    model = stack(sizes=(5,))
    assert list(model.state_dict()) == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0"]
    model[0].load_state_dict(nn.LSTM(I, 5).state_dict())
    assert len(model) == 1 and [type(m) for m in model] == [rnnreg.LSTM] and model[-1] is model[0]
    lm = RNNLanguageModel(7, embedding_size=4, hidden_size=5, num_layers=2)
    assert {k.split(".")[0] for k in lm.state_dict()} == {"encoder", "layers", "decoder"}
    assert "layers.1.weight_hh_l0" in lm.state_dict()
    assert "layers.0.weight_ih_l0_reverse" in SequenceNet(3, 2, bidirectional=True).state_dict()
    keys = set(Seq2Seq(6, 7, num_layers=2).state_dict())
    assert {"encoder_layers.1.bias_hh_l0", "decoder_layers.0.weight_ih_l0"} <= keys


@pytest.mark.parametrize("call, match", [
    (lambda m: m(torch.randn(T, B, I + 1)), "x must be"),
    (lambda m: m(inputs(), [None]), "states"),
    (lambda m: m(inputs(), zoneout_keep=[torch.ones(T, B, 1)]), "zoneout_keep"),
    (lambda m: m(inputs(), seeds=[1]), "seeds"),
    (lambda m: m(inputs(), masks=[None, None]), "masks"),
])
def test_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call(stack())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(cell="lstmx"), ValueError, "cell"),
    (dict(cell="grud"), ValueError, "cell"),
    (dict(sizes=()), ValueError, "sizes"),
    (dict(sizes=(5, 0)), ValueError, r"sizes\[1\]"),
    (dict(nonrecurrent_p=1.0), ValueError, "nonrecurrent_p"),
    (dict(cell="gru", zoneout_c_p=0.1), TypeError, "zoneout_c_p applies to cell='lstm' only, not to cell='gru'"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        stack(**kwargs)


def test_layer_sizes():
    assert layer_sizes(8, 3) == [8, 8, 8]
    assert layer_sizes(8, 2, [3, 4]) == [3, 4]
    with pytest.raises(ValueError, match="one size per layer"):
        layer_sizes(8, 2, [3])
    with pytest.raises(ValueError, match="num_layers"):
        layer_sizes(8, 0)
