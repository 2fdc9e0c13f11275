"""rnnreg.LSTM/GRU/RNN with every regularizer off behave exactly like torch.nn's, on every path."""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnreg
from helpers import assert_same, run

CASES = [
    (torch.nn.LSTM, rnnreg.LSTM, {}),
    (torch.nn.GRU, rnnreg.GRU, {}),
    (torch.nn.RNN, rnnreg.RNN, {"nonlinearity": "tanh"}),
    (torch.nn.RNN, rnnreg.RNN, {"nonlinearity": "relu"}),
]
PATHS = ["fused", "stepwise", "reference"]


def pair(nn_cls, our_cls, extra, **kw):
    torch.manual_seed(0)
    ref = nn_cls(5, 7, **extra, **kw).double()
    ours = our_cls(5, 7, **extra, **kw).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("nn_cls,our_cls,extra", CASES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True}, {"batch_first": True, "bias": False}])
def test_outputs_and_gradients_match_torch(nn_cls, our_cls, extra, path, kw):
    ref, ours = pair(nn_cls, our_cls, extra, **kw)
    ours.implementation = path
    x = torch.randn(4, 3, 5, dtype=torch.double)
    assert_same(run(ours, x), run(ref, x), atol=1e-10)


def test_state_dict_keys_are_torch_keys():
    ref, ours = pair(torch.nn.LSTM, rnnreg.LSTM, {}, num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("path", PATHS)
def test_initial_state_is_used(path):
    ref, ours = pair(torch.nn.LSTM, rnnreg.LSTM, {}, num_layers=2)
    ours.implementation = path
    x = torch.randn(3, 2, 5, dtype=torch.double)
    hx = (torch.randn(2, 2, 7, dtype=torch.double), torch.randn(2, 2, 7, dtype=torch.double))
    assert_same(run(ours, x, hx), run(ref, x, hx), atol=1e-10)


@pytest.mark.parametrize("nn_cls,our_cls,extra", CASES[:2])
@pytest.mark.parametrize("path", PATHS)
def test_packed_sequences_match_torch(nn_cls, our_cls, extra, path):
    ref, ours = pair(nn_cls, our_cls, extra, num_layers=2, bidirectional=True)
    ours.implementation = path
    x = torch.randn(6, 4, 5, dtype=torch.double)
    lengths = torch.tensor([3, 6, 1, 4])
    results = []
    for layer in (ours, ref):
        layer.zero_grad()
        xi = x.clone().requires_grad_(True)
        out, hidden = layer(pack_padded_sequence(xi, lengths, enforce_sorted=False))
        padded, lens = pad_packed_sequence(out)
        h = hidden[0] if isinstance(hidden, tuple) else hidden
        (padded.pow(2).sum() + h.sum()).backward()
        results.append((padded, h, xi.grad, {n: p.grad for n, p in layer.named_parameters()}))
    for a, b in zip(results[0][:3], results[1][:3]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    for k, g in results[1][3].items():
        torch.testing.assert_close(results[0][3][k], g, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_lengths_argument_equals_packed(path):
    ours = rnnreg.LSTM(5, 7, bidirectional=True, implementation=path).double()
    x = torch.randn(6, 3, 5, dtype=torch.double)
    lengths = torch.tensor([6, 2, 4])
    out_l, (h_l, c_l) = ours(x, lengths=lengths)
    out_p, (h_p, c_p) = ours(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = pad_packed_sequence(out_p, total_length=6)
    torch.testing.assert_close(out_l, padded)
    torch.testing.assert_close(h_l, h_p)
    torch.testing.assert_close(c_l, c_p)
    assert out_l[2:, 1].abs().sum() == 0  # padding stays zero


@pytest.mark.parametrize("path", PATHS)
def test_unbatched_input(path):
    ref, ours = pair(torch.nn.GRU, rnnreg.GRU, {}, num_layers=2)
    ours.implementation = path
    x = torch.randn(4, 5, dtype=torch.double)
    h0 = torch.randn(2, 7, dtype=torch.double)
    out, h = ours(x, h0)
    out_r, h_r = ref(x, h0)
    assert out.shape == out_r.shape == (4, 7) and h.shape == h_r.shape == (2, 7)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(h, h_r)


def test_float32_paths_agree():
    torch.manual_seed(1)
    layer = rnnreg.LSTM(16, 32, num_layers=2)
    x = torch.randn(10, 4, 16)
    results = {}
    for path in PATHS:
        layer.implementation = path
        results[path] = run(layer, x)
    assert_same(results["stepwise"], results["reference"], atol=1e-5)
    assert_same(results["fused"], results["reference"], atol=1e-5)


@pytest.mark.parametrize("nn_cls,our_cls,extra", CASES)
def test_the_layers_are_torch_nn_subclasses_with_torch_s_attributes(nn_cls, our_cls, extra):
    """isinstance and type-based dispatch see them; mode / proj_size / all_weights /
    _flat_weights are torch.nn's, so code reading them (init loops, summaries) works unchanged."""
    ref, ours = pair(nn_cls, our_cls, extra, num_layers=2, bidirectional=True)
    assert isinstance(ours, nn_cls)
    assert (ours.mode, ours.proj_size) == (ref.mode, ref.proj_size)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert ours._all_weights == ref._all_weights
    for got, want in zip(ours.all_weights, ref.all_weights):
        for a, b in zip(got, want):
            assert torch.equal(a, b)


def test_peephole_weights_are_part_of_all_weights_but_not_of_torch_s_flat_list():
    layer = rnnreg.LSTM(3, 4, peepholes=True)
    assert [w.shape for w in layer.all_weights[0]][-1] == (12,)
    assert "weight_ch_l0" not in layer._flat_weights_names  # torch's kernels never see it


def test_to_and_copies_keep_the_weight_cache_in_step():
    """torch.nn's _apply refreshes _flat_weights after .to(); deepcopy and pickle keep it."""
    import copy
    import pickle

    layer = rnnreg.GRU(3, 4, num_layers=2).double()
    assert all(w.dtype == torch.float64 for w in layer._flat_weights)
    x = torch.randn(5, 2, 3, dtype=torch.double)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert all(a is getattr(clone, n) for a, n in zip(clone._flat_weights, clone._flat_weights_names))
        torch.testing.assert_close(clone(x)[0], layer(x)[0])


def test_torch_s_dynamic_quantization_leaves_the_layers_in_float():
    """quantize_dynamic maps by exact type: it leaves rnnreg's layers (peepholes, zoneout, which
    its quantized LSTM could not run) as they are instead of breaking them."""
    model = torch.nn.Sequential(rnnreg.LSTM(3, 4, peepholes=True))
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.LSTM}, dtype=torch.qint8)
    assert type(quantized[0]) is rnnreg.LSTM
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(quantized[0](x)[0], model[0](x)[0])


@pytest.mark.parametrize("kwargs,error,message", [
    ({"batch_first": "False"}, TypeError, "batch_first should be of type bool"),
    ({"bias": 1}, TypeError, "bias should be of type bool"),
    ({"dropout": 1.5}, ValueError, "dropout should be a number in range"),
    ({"hidden_size": 4.0}, TypeError, "hidden_size should be of type int"),
    ({"hidden_size": 0}, ValueError, "hidden_size must be greater than zero"),
    ({"input_size": -1}, ValueError, "input_size must be greater than zero"),
    ({"num_layers": 0}, ValueError, "num_layers must be greater than zero"),
])
@pytest.mark.parametrize("nn_cls,our_cls,extra", CASES[:3])
def test_bad_arguments_raise_what_torch_raises(nn_cls, our_cls, extra, kwargs, error, message):
    args = {"input_size": 3, "hidden_size": 4} | kwargs
    for cls in (nn_cls, our_cls):
        with pytest.raises(error, match=message):
            cls(**args, **extra)


def test_dropout_on_one_layer_warns_as_torch_does():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        rnnreg.LSTM(3, 4, dropout=0.5)


def test_projections_are_refused_after_torch_s_own_checks():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        rnnreg.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="proj_size .* not supported by rnnreg"):
        rnnreg.LSTM(3, 4, proj_size=2)


def test_torchscript_scripting_is_refused_by_torchscript_itself():
    """The README lists it as refused: the forward's keyword-only extras cannot be scripted."""
    with pytest.raises(torch.jit.frontend.NotSupportedError, match="keyword-only"):
        torch.jit.script(rnnreg.LSTM(3, 4))


@pytest.mark.parametrize("value", ["False", 0, 1, None], ids=repr)
@pytest.mark.parametrize("nn_cls,our_cls,extra", CASES[:3])
def test_a_non_bool_bidirectional_is_refused_where_torch_fails(nn_cls, our_cls, extra, value):
    """torch.nn keeps the value and its kernel refuses it at the first call (TypeError);
    rnnreg's ``bool(bidirectional)`` made "False" a bidirectional layer. Now a TypeError at once."""
    x = torch.randn(3, 2, 3)
    with pytest.raises(TypeError):
        nn_cls(3, 4, bidirectional=value, **extra)(x)
    with pytest.raises(TypeError, match="bidirectional should be of type bool"):
        our_cls(3, 4, bidirectional=value, **extra)


@pytest.mark.parametrize("name", ["peepholes", "mc_dropout"])
def test_rnnreg_s_own_flags_refuse_non_bools_as_torch_s_do(name):
    with pytest.raises(TypeError, match=f"{name} should be of type bool"):
        rnnreg.LSTM(3, 4, **{name: "False"})


@pytest.mark.parametrize("nn_cls,our_cls,extra", CASES[:3])
def test_integer_and_float_like_arguments_are_taken_as_torch_takes_them(nn_cls, our_cls, extra):
    """A sweep's NumPy scalars: torch.nn takes an np.int64 layer count; rnnreg also takes
    NumPy floats as rates, as it takes them as ``dropout``."""
    ours = our_cls(3, 4, num_layers=np.int64(2), dropout=np.float32(0.25), **extra)
    theirs = nn_cls(3, 4, num_layers=np.int64(2), dropout=np.float32(0.25), **extra)
    assert ours.num_layers == theirs.num_layers == 2 and type(ours.num_layers) is int
    layer = our_cls(3, 4, zoneout_h_p=np.float32(0.25), weight_p=np.float64(0.5), **extra)
    assert layer.zoneout_h_p == 0.25 and layer.weight_p == 0.5
    with pytest.raises(TypeError, match="num_layers should be of type int"):
        our_cls(3, 4, num_layers=2.0, **extra)
    for cls in (nn_cls, our_cls):  # float(None) first, in both
        with pytest.raises(TypeError):
            cls(3, 4, dropout=None, **extra)


@pytest.mark.parametrize("cls", [rnnreg.GRU, rnnreg.RNN], ids=lambda c: c.__name__)
def test_gru_and_rnn_refuse_proj_size_even_as_zero_as_torch_does(cls):
    for c in (getattr(torch.nn, cls.__name__), cls):
        with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
            c(3, 4, proj_size=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_forget_bias_is_refused(value):
    with pytest.raises(ValueError, match="forget_bias must be a finite number"):
        rnnreg.LSTM(3, 4, forget_bias=value)


def test_an_lstm_hx_that_is_not_a_pair_raises_runtime_error_as_torch_does():
    """torch.nn: RuntimeError for three states; for a lone tensor it depends on its shape (an
    IndexError here, RuntimeError or TypeError for others). rnnreg: RuntimeError for both."""
    x, h = torch.randn(3, 2, 3), torch.zeros(1, 2, 4)
    with pytest.raises(RuntimeError):
        torch.nn.LSTM(3, 4)(x, (h, h, h))
    for hx in ((h, h, h), h):
        with pytest.raises(RuntimeError, match="hx must be a tuple of two tensors"):
            rnnreg.LSTM(3, 4)(x, hx)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nn_cls,our_cls,extra", CASES[:3])
def test_a_state_of_another_dtype_is_refused_on_every_path(nn_cls, our_cls, extra, path):
    """torch.nn's kernels refuse a float64 h_0 for a float32 layer; the stepwise kernel cast it."""
    x, h = torch.randn(3, 2, 3), torch.zeros(1, 2, 4, dtype=torch.float64)
    hx = (h, h) if nn_cls is torch.nn.LSTM else h
    with pytest.raises(RuntimeError):
        nn_cls(3, 4, **extra)(x, hx)
    with pytest.raises(RuntimeError, match="dtype"):
        our_cls(3, 4, implementation=path, **extra)(x, hx)
