"""Seq2Seq: shapes, gradients, padding and batch invariance, regularizers off in eval, errors."""

from __future__ import annotations

import pytest
import torch

from rnnreg.models.seq2seq import Seq2Seq, reorder_state

SRC_V, TGT_V = 9, 7
# Every regularizer whose eval-mode form is the identity (zoneout's is its expectation instead,
# Krueger et al. 2017, sec. 2).
REGULARIZERS = dict(embed_p=0.2, input_p=0.2, hidden_p=0.2, output_p=0.2, nonrecurrent_p=0.1, weight_p=0.3,
                    recurrent_dropout=0.2, weight_noise_std=0.05)


pytestmark = pytest.mark.usefixtures("one_thread")


def make(seed: int = 0, **kw) -> Seq2Seq:
    torch.manual_seed(seed)
    options = dict(embedding_size=6, hidden_size=8, num_layers=2) | kw
    return Seq2Seq(SRC_V, TGT_V, **options)


def data(seed: int = 1, batch: int = 3, src: int = 5, tgt: int = 4):
    gen = torch.Generator().manual_seed(seed)
    source = torch.randint(3, SRC_V, (src, batch), generator=gen)
    lengths = torch.randint(1, src + 1, (batch,), generator=gen)
    lengths[0] = src
    target = torch.randint(1, TGT_V, (tgt, batch), generator=gen)
    return source, lengths, target


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "irnn"])
@pytest.mark.parametrize("attention", ["none", "dot"])
def test_shapes_and_gradients_reach_the_encoder(cell, attention):
    model = make(cell=cell, attention=attention, hidden_sizes=[8, 5])
    source, lengths, target = data()
    out = model(source, lengths, target)
    assert out.prediction.shape == (4, 3, TGT_V)
    assert [r.shape for r in out.raw] == [(4, 3, 8), (4, 3, 5)]
    assert [d.shape for d in out.dropped] == [(4, 3, 8), (4, 3, 5)]
    out.prediction.sum().backward()
    # The source reaches the loss only through the decoder's initial state (and attention).
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("attention", ["none", "dot"])
def test_padding_and_other_sequences_do_not_change_a_sequence(attention):
    """The encoder's final state is taken at each sequence's own last step and attention skips
    padding, so garbage after a sequence's length, or its neighbours, change nothing."""
    model = make(attention=attention).eval()
    source, lengths, target = data(batch=4, src=6)
    base = model(source, lengths, target).prediction
    noisy = source.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[n:, b] = 3 + (noisy[n:, b] + 1) % (SRC_V - 3)
    padded = torch.cat([noisy, torch.full((3, 4), 4)])  # (6, 4) -> (9, 4): more padding
    torch.testing.assert_close(model(padded, lengths, target).prediction, base)
    alone = model(source[: lengths[2], 2:3], lengths[2:3], target[:, 2:3]).prediction
    torch.testing.assert_close(alone, base[:, 2:3], atol=1e-6, rtol=1e-5)


def test_target_lengths_keep_real_steps_and_zero_the_padding():
    model = make().eval()
    source, lengths, target = data()
    full = model(source, lengths, target)
    cut = model(source, lengths, target, torch.tensor([4, 2, 3]))
    torch.testing.assert_close(cut.prediction[:2], full.prediction[:2])
    assert torch.all(cut.raw[-1][2:, 1] == 0)


def test_regularizers_are_identity_in_eval_and_active_in_training():
    regular = make(attention="dot", **REGULARIZERS)
    plain = make(attention="dot")
    plain.load_state_dict(regular.state_dict())
    source, lengths, target = data()
    regular.eval(), plain.eval()
    torch.testing.assert_close(regular(source, lengths, target).prediction,
                               plain(source, lengths, target).prediction)
    regular.train()
    first = regular(source, lengths, target).prediction
    assert not torch.allclose(first, regular(source, lengths, target).prediction)


def test_lstm_options_and_cells():
    model = make(peepholes=True, forget_bias=1.0, zoneout_c_p=0.3, zoneout_h_p=0.1, return_cells=True)
    source, lengths, target = data()
    out = model(source, lengths, target)
    model.eval()
    torch.testing.assert_close(model(source, lengths, target).prediction,
                               model(source, lengths, target).prediction)
    assert out.cells is not None and [c.shape for c in out.cells] == [(4, 3, 8)] * 2
    assert make(cell="gru", return_cells=True)(source, lengths, target).cells is None


def test_decoding_state_is_explicit_and_reorderable():
    model = make().eval()
    source, lengths, target = data()
    state, memory = model.encode(source, lengths)
    step = model.decode(target[:1], state, memory)
    flip = torch.tensor([2, 1, 0])
    moved = model.decode(target[:1, flip], reorder_state(state, flip), memory.select(flip))
    torch.testing.assert_close(moved.logits, step.logits[:, flip])
    # Nothing was stored: the same call again gives the same answer.
    torch.testing.assert_close(model.decode(target[:1], state, memory).logits, step.logits)


@pytest.mark.parametrize("kwargs, error", [
    (dict(cell="lstmx"), ValueError), (dict(attention="bahdanau"), ValueError),
    (dict(cell="gru", peepholes=True), TypeError), (dict(input_p=1.0), ValueError),
    (dict(init_range=0.0), ValueError), (dict(hidden_sizes=[4]), ValueError),
])
def test_bad_arguments_are_refused(kwargs, error):
    with pytest.raises(error):
        make(**kwargs)


def test_bad_vocab_and_inputs_are_refused():
    with pytest.raises(ValueError, match="source_vocab"):
        Seq2Seq(0, TGT_V)
    model = make()
    source, lengths, target = data()
    with pytest.raises(TypeError, match="tokens"):
        model(source.float(), lengths, target)
    state, memory = model.encode(source, lengths)
    with pytest.raises(ValueError, match="state"):
        model.decode(target, state[:1], memory)
