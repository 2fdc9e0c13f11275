"""rnnreg.LSTM/GRU/RNN with every regularizer off behave exactly like torch.nn's, on every path."""

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
