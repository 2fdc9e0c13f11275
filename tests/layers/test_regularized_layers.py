"""The regularizers as rnnreg.LSTM/GRU/RNN apply them: what each does in training, the identity (or
the expectation) in eval, MC dropout, and all of them composed on every path. The regularizers
themselves are tested in tests/regularizers/."""

import pytest
import torch

import rnnreg
from rnnreg.kernels.reference import lstm_reference
from rnnreg.regularizers.masks import dropout_mask

H, I = 6, 4


def lstm_steps(cell: torch.nn.LSTMCell, x, zh, zc):
    """Zoneout's eval recurrence written out with torch.nn.LSTMCell (Krueger et al. 2016, eq. 5-6)."""
    h = c = x.new_zeros(x.shape[1], cell.hidden_size)
    hs, cs = [], []
    for x_t in x:
        h_new, c_new = cell(x_t, (h, c))
        h, c = zh * h + (1 - zh) * h_new, zc * c + (1 - zc) * c_new
        hs.append(h)
        cs.append(c)
    return torch.stack(hs), torch.stack(cs)


def single(**kw):
    torch.manual_seed(0)
    return rnnreg.LSTM(I, H, **kw).double()


def as_cell(layer) -> torch.nn.LSTMCell:
    cell = torch.nn.LSTMCell(I, H).double()
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    return cell


@pytest.mark.parametrize("zh,zc", [(0.3, 0.0), (0.0, 0.4), (0.25, 0.6)])
def test_zoneout_eval_is_the_expectation_with_separate_rates(zh, zc):
    layer = single(zoneout_h_p=zh, zoneout_c_p=zc).eval()
    x = torch.randn(5, 3, I, dtype=torch.double)
    out, (h_n, c_n), states = layer(x, return_cells=True)
    hs, cs = lstm_steps(as_cell(layer), x, zh, zc)
    torch.testing.assert_close(out, hs)
    torch.testing.assert_close(states.cells[0], cs)
    torch.testing.assert_close(c_n[0], cs[-1])


def test_zoneout_keep_one_freezes_state_and_passes_gradient():
    layer = single().train()
    x = torch.randn(5, 2, I, dtype=torch.double)
    h0 = torch.randn(1, 2, H, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(1, 2, H, dtype=torch.double)
    out, (h_n, c_n) = layer(x, (h0, c0), zoneout_keep=torch.ones(5, 2, 1, dtype=torch.double))
    torch.testing.assert_close(out, h0.expand(5, 2, H))
    torch.testing.assert_close(c_n, c0)
    out.sum().backward()
    torch.testing.assert_close(h0.grad, torch.full_like(h0, 5.0))  # identity through every step


@pytest.mark.parametrize("implementation", ["reference", "stepwise"])
def test_a_zoneout_keep_signal_carries_no_gradient_on_any_path(implementation):
    """In eval the signal is the zoneout weight itself; the kernels take it as a constant, and the
    reference twin gave it a gradient (norm 1.44 in an audit) where they gave none: now none on
    every path, as in training, where masks are sampled from it."""
    layer = single(implementation=implementation).eval()
    x = torch.randn(5, 2, I, dtype=torch.double)
    keep = torch.full((5, 2, 1), 0.3, dtype=torch.double, requires_grad=True)
    out, _ = layer(x, zoneout_keep=keep)
    out.sum().backward()
    assert keep.grad is None and layer.weight_hh_l0.grad is not None


def test_zoneout_training_masks_are_fresh_per_step_and_per_state():
    layer = rnnreg.LSTM(I, 64, zoneout_h_p=0.5, zoneout_c_p=0.5).train()
    x = torch.randn(30, 8, I)
    out, _, states = layer(x, return_cells=True)
    kept_h = out[1:] == out[:-1]  # (T-1, B, H): where h_t kept h_{t-1}
    kept_c = states.cells[0][1:] == states.cells[0][:-1]
    assert 0.4 < kept_h.double().mean() < 0.6
    assert 0.4 < kept_c.double().mean() < 0.6
    assert not torch.equal(kept_h[0], kept_h[1])  # a new mask each step
    assert not torch.equal(kept_h, kept_c)  # h and c have their own masks


def seeded(layer, x, seed=7, **kw):
    torch.manual_seed(seed)
    return layer(x, **kw)


def test_weight_drop_mask_per_call_constant_over_time_and_gradient_reaches_raw_weight():
    layer = single(weight_p=0.5).train()
    x = torch.randn(6, 3, I, dtype=torch.double)
    torch.manual_seed(7)
    mask = dropout_mask(layer.weight_hh_l0.shape, 0.5, layer.weight_hh_l0)
    # The same recurrence with the dropped matrix fixed for all steps (one mask per call).
    expect, _ = lstm_reference(x, x.new_zeros(3, H), x.new_zeros(3, H), layer.weight_ih_l0,
                               layer.weight_hh_l0 * mask, layer.bias_ih_l0, layer.bias_hh_l0)
    out, _ = seeded(layer, x)
    torch.testing.assert_close(out, expect)
    plain = single().train()
    torch.testing.assert_close(out[0], plain(x)[0][0])  # step 0 with h0 = 0 ignores W_hh
    assert not torch.equal(seeded(layer, x, seed=8)[0], out)  # a new mask on the next call
    out.sum().backward()
    grad = layer.weight_hh_l0.grad
    assert grad is not None and grad.abs().sum() > 0
    assert torch.all(grad[mask == 0] == 0)
    assert list(layer.state_dict()) == list(torch.nn.LSTM(I, H).state_dict())


@pytest.mark.parametrize("kw", [{"weight_p": 0.5}, {"weight_noise_std": 0.1}, {"input_p": 0.5},
                                {"hidden_p": 0.5, "num_layers": 2}, {"output_p": 0.5},
                                {"dropout": 0.5, "num_layers": 2}, {"recurrent_dropout": 0.5},
                                {"recurrent_dropout": 0.5, "recurrent_dropout_mode": "semeniuta"}])
def test_stochastic_in_training_identity_in_eval_and_with_mc_dropout(kw):
    layer = single(**kw)
    plain = single(num_layers=kw.get("num_layers", 1))
    x = torch.randn(5, 3, I, dtype=torch.double)
    layer.train()
    assert not torch.allclose(layer(x)[0], plain(x)[0])
    layer.eval()
    torch.testing.assert_close(layer(x)[0], plain(x)[0], atol=0, rtol=0)
    rnnreg.set_mc_dropout(layer, True)
    assert not torch.equal(layer(x)[0], layer(x)[0])


def test_recurrent_dropout_uses_one_mask_per_sequence():
    layer = single(recurrent_dropout=0.4).train()
    x = torch.randn(6, 3, I, dtype=torch.double)
    torch.manual_seed(3)
    mask = dropout_mask((3, H), 0.4, x)  # (B, H): one mask for all steps
    zeros = x.new_zeros(3, H)
    expect, _ = lstm_reference(x, zeros, zeros, *[getattr(layer, n) for n in
                               ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")], rec_mask=mask)
    torch.testing.assert_close(seeded(layer, x, seed=3)[0], expect)


@pytest.mark.parametrize("cell", [rnnreg.LSTM, rnnreg.GRU, rnnreg.RNN])
def test_everything_composes_and_paths_agree(cell):
    extra = {"zoneout_c_p": 0.2, "peepholes": True, "forget_bias": 1.0} if cell is rnnreg.LSTM else {}
    torch.manual_seed(0)
    layer = cell(I, H, num_layers=2, bidirectional=True, dropout=0.2, input_p=0.1, hidden_p=0.2,
                 output_p=0.3, weight_p=0.4, weight_noise_std=0.01, recurrent_dropout=0.2,
                 zoneout_h_p=0.1, **extra).double().train()
    x = torch.randn(5, 3, I, dtype=torch.double)
    lengths = torch.tensor([5, 2, 4])
    results = []
    for path in ("stepwise", "reference"):
        layer.implementation = path
        layer.zero_grad()
        out, _ = seeded(layer, x, lengths=lengths)
        out.pow(2).sum().backward()
        results.append((out, [p.grad.clone() for p in layer.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0], atol=0, rtol=0)  # deterministic in eval


def test_fused_compatible_regularizers_agree_across_paths():
    torch.manual_seed(0)
    layer = rnnreg.LSTM(I, H, num_layers=2, input_p=0.2, hidden_p=0.3, output_p=0.1, weight_p=0.5,
                        dropout=0.2).double().train()
    x = torch.randn(5, 3, I, dtype=torch.double)
    outs = []
    for path in ("fused", "stepwise", "reference"):
        layer.implementation = path
        outs.append(seeded(layer, x)[0])
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])


def test_states_expose_every_layer():
    layer = rnnreg.LSTM(I, H, num_layers=3, output_p=0.5, bidirectional=True).train()
    x = torch.randn(5, 2, I)
    out, _, states = layer(x, return_states=True)
    assert len(states.raw) == len(states.dropped) == 3 and states.cells is None
    assert states.raw[-1].shape == (5, 2, 2 * H)
    torch.testing.assert_close(states.dropped[-1], out)
    assert not torch.equal(states.raw[-1], out)
    _, _, with_cells = layer.eval()(x, return_cells=True)
    assert [c.shape for c in with_cells.cells] == [(5, 2, 2 * H)] * 3


def test_peepholes_with_zero_weights_equal_plain_lstm_and_get_gradient():
    layer = single(peepholes=True)
    with torch.no_grad():
        layer.weight_ch_l0.zero_()
    plain = single()
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if "weight_ch" not in k})
    x = torch.randn(5, 3, I, dtype=torch.double)
    out = layer(x)[0]
    torch.testing.assert_close(out, plain(x)[0])
    out.sum().backward()
    assert layer.weight_ch_l0.grad.abs().sum() > 0


def test_forget_bias_and_irnn_init():
    layer = rnnreg.LSTM(I, H, forget_bias=1.0)
    torch.testing.assert_close(layer.bias_ih_l0[H:2 * H] + layer.bias_hh_l0[H:2 * H], torch.ones(H))
    irnn = rnnreg.IRNN(I, H)
    torch.testing.assert_close(irnn.weight_hh_l0, torch.eye(H))
    assert irnn.bias_hh_l0.abs().sum() == 0 and irnn.nonlinearity == "relu"


def test_trec_rnn_thresholds():
    torch.manual_seed(0)
    layer = rnnreg.RNN(I, H, nonlinearity="trec", trec_threshold=0.1).double()
    x = torch.randn(4, 2, I, dtype=torch.double)
    h = x.new_zeros(2, H)
    for x_t, out_t in zip(x, layer(x)[0]):
        pre = x_t @ layer.weight_ih_l0.T + layer.bias_ih_l0 + h @ layer.weight_hh_l0.T + layer.bias_hh_l0
        h = torch.where(pre > 0.1, pre, torch.zeros_like(pre))
        torch.testing.assert_close(out_t, h)


@pytest.mark.parametrize("kw,match", [
    ({"weight_p": 1.0}, "weight_p"), ({"dropout": -0.1}, "dropout"), ({"zoneout_h_p": 1.5}, "zoneout_h_p"),
    ({"recurrent_dropout": float("nan")}, "recurrent_dropout"), ({"input_p": "0.5"}, "input_p"),
    ({"implementation": "cudnn"}, "implementation"), ({"weight_noise_std": -1.0}, "weight_noise_std"),
    ({"hidden_size": 0}, "hidden_size"), ({"proj_size": 3}, "proj_size"),
])
def test_bad_arguments_are_refused_clearly(kw, match):
    args = {"input_size": I, "hidden_size": H, **kw}
    with pytest.raises((ValueError, TypeError), match=match):
        rnnreg.LSTM(**args)


def test_bad_calls_are_refused_clearly():
    with pytest.raises(TypeError, match="peepholes applies to rnnreg.LSTM only"):
        rnnreg.GRU(I, H, peepholes=True)
    layer = rnnreg.LSTM(I, H, zoneout_h_p=0.1, implementation="fused")
    with pytest.raises(ValueError, match="cannot run zoneout"):
        layer(torch.randn(3, 2, I))
    with pytest.raises(RuntimeError, match="input_size"):
        rnnreg.LSTM(I, H)(torch.randn(3, 2, I + 1))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size .*h_0"):
        rnnreg.LSTM(I, H)(torch.randn(3, 2, I), (torch.zeros(1, 3, H), torch.zeros(1, 3, H)))
    with pytest.raises(ValueError, match="zoneout_keep"):
        rnnreg.GRU(I, H)(torch.randn(3, 2, I), zoneout_keep=torch.full((3, 2, 1), 2.0))
    with pytest.raises(ValueError, match="lengths"):
        rnnreg.GRU(I, H)(torch.randn(3, 2, I), lengths=[4, 1])



@pytest.mark.parametrize("train", [True, False])
def test_a_nan_keep_probability_is_refused(train):
    """A NaN in zoneout_keep passed both range checks before: training never kept, eval gave NaN."""
    layer = rnnreg.LSTM(I, H).train(train)
    keep = torch.full((3, 2, 1), 0.5)
    keep[1, 0] = float("nan")
    with pytest.raises(ValueError, match="no NaN"):
        layer(torch.randn(3, 2, I), zoneout_keep=keep)


@pytest.mark.parametrize("cls", [rnnreg.LSTM, rnnreg.GRU, rnnreg.RNN])
def test_shape_and_flag_errors_match_torch_nn(cls):
    """torch.nn's exception types, for code that catches them: a non-bool batch_first / bias is a
    TypeError (batch_first="False" used to become True), a wrong feature count or hidden size a
    RuntimeError, a 4-D input a ValueError."""
    ours, theirs = cls, getattr(torch.nn, cls.__name__)
    for kw in ({"batch_first": "False"}, {"bias": "no"}, {"batch_first": 1}):
        with pytest.raises(TypeError) as torch_err:
            theirs(I, H, **kw)
        with pytest.raises(TypeError, match="should be of type bool") as our_err:
            ours(I, H, **kw)
        assert str(our_err.value) == str(torch_err.value)
    hx = torch.zeros(1, 3, H)
    hx = (hx, hx) if cls is rnnreg.LSTM else hx
    for x, state, error in ((torch.randn(3, 2, I + 1), None, RuntimeError), (torch.randn(3, 2, I), hx, RuntimeError),
                            (torch.randn(3, 2, I, 1), None, ValueError)):
        with pytest.raises(error):
            theirs(I, H)(x, state)
        with pytest.raises(error):
            ours(I, H)(x, state)
