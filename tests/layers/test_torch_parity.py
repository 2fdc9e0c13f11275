"""rnnreg.LSTM / GRU / RNN held to PyTorch's own RNN tests, side by side with torch.nn.

Each block names the PyTorch test it mirrors: ``test/test_nn.py``, ``test/test_modules.py`` (the
checks run on every ModuleInfo) and the samples and error inputs of
``torch/testing/_internal/common_modules.py``. The code is ours; the behaviours are theirs. Where a
comparison is possible, torch.nn's layer and ours get the same weights (ours loads torch's state
dict), the same inputs and the same seed, and must give the same results, or the same exception
type (and message, where torch's is informative). What tests/layers/test_dropin.py already checks
(outputs and gradients on every path, state-dict keys, packed LSTM/GRU, ``lengths``) is not
repeated. Where rnnreg refuses on purpose (proj_size > 0; a second backward through the C++ stepwise
kernel) the refusal is asserted.
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from torch.testing import assert_close
from torch.utils._pytree import tree_flatten, tree_map

import rnnreg
from rnnreg.kernels.fast import fast_available
from helpers import assert_same, grads, run

# Tiny layers: extra threads only add synchronisation (and spin on a busy machine).
pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
CELLS = {  # name: (torch.nn class, rnnreg class, extra constructor keywords)
    "lstm": (nn.LSTM, rnnreg.LSTM, {}),
    "gru": (nn.GRU, rnnreg.GRU, {}),
    "rnn_tanh": (nn.RNN, rnnreg.RNN, {}),
    "rnn_relu": (nn.RNN, rnnreg.RNN, {"nonlinearity": "relu"}),
}
NAMES = list(CELLS)
PATHS = ["fused", "stepwise", "reference"]


def twins(name: str, *args, dtype=F64, **kw):
    """torch.nn's layer and ours with the same weights (ours loads torch's state dict)."""
    torch.manual_seed(0)
    torch_cls, our_cls, extra = CELLS[name]
    ref = torch_cls(*args, **extra, **kw).to(dtype)
    ours = our_cls(*args, **extra, **kw).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def hidden(name: str, shape, fill=torch.randn):
    """An initial state of ``shape``: h_0, or (h_0, c_0) for an LSTM."""
    h = fill(shape, dtype=F64)
    return (h, fill(shape, dtype=F64)) if name == "lstm" else h


def flat(result) -> list[torch.Tensor]:
    """(output, h_n) or (output, (h_n, c_n)) as a flat list of tensors."""
    return tree_flatten(result)[0]


def outcome(fn):
    """The exception ``fn()`` raises, or None: what we compare between torch.nn and rnnreg."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - any exception type is the thing compared
        return exc
    return None


def assert_raises_like(want, got, same_message: bool = True) -> None:
    assert want is not None, "torch.nn accepted this input: the case is mis-built"
    assert type(got) is type(want), f"rnnreg: {got!r}; torch.nn: {want!r}"
    if same_message:
        assert str(want) in str(got), f"rnnreg: {got}; torch.nn: {want}"


@pytest.fixture
def swap_mode():
    """Restore torch's global swap-on-conversion flag after a test sets it."""
    yield torch.__future__.set_swap_module_params_on_conversion
    torch.__future__.set_swap_module_params_on_conversion(False)


# --- Constructor arguments: common_modules.module_error_inputs_torch_nn_RNN_GRU (their regexes),
# test_nn's test_RNN_nonlinearity(_passed_as_arg), test_projections_errors_on_gru_and_rnn and
# RNNBase's dropout check (test_invalid_dropout_p's rule for nn.Dropout).

BAD_ARGS = [  # (args, keywords, torch's message is informative)
    ((10, 0, 1), {}, True), ((10, 10, 0), {}, True), ((3, 5, -1), {}, True),
    ((3, 5), {"bias": 0}, True), ((3, 5), {"bias": 1}, True), ((3, 5), {"bias": "True"}, True),
    ((3, 5), {"batch_first": 0}, True), ((3, 5), {"batch_first": 1}, True),
    ((3, 5), {"batch_first": "False"}, True), ((3.0, 5), {}, True), (("10", 5), {}, True),
    ((0, 5), {}, True), ((-1, 5), {}, True), ((3, 5.0), {}, True),
    ((3, 5), {"dropout": -0.1}, True), ((3, 5), {"dropout": 1.1}, True),
    ((3, 5), {"dropout": True}, True), ((3, 5), {"dropout": math.nan}, True),
    ((3, 5), {"dropout": "0.1"}, True),
    ((3, 5, 2.0), {}, False),  # torch's message is range()'s; the type is what a caller sees
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("args,kw,same_message", BAD_ARGS, ids=[f"{a}{k}" for a, k, _ in BAD_ARGS])
def test_constructor_refuses_what_torch_refuses(name, args, kw, same_message):
    torch_cls, our_cls, extra = CELLS[name]
    want = outcome(lambda: torch_cls(*args, **extra, **kw))
    assert_raises_like(want, outcome(lambda: our_cls(*args, **extra, **kw)), same_message)


@pytest.mark.parametrize("proj_size", [-1, 5])
def test_invalid_proj_size_is_refused_like_torch(proj_size):
    want = outcome(lambda: nn.LSTM(3, 5, proj_size=proj_size))
    assert_raises_like(want, outcome(lambda: rnnreg.LSTM(3, 5, proj_size=proj_size)))


@pytest.mark.parametrize("proj_size", [1, 2])
def test_lstm_projections_are_refused_on_purpose(proj_size):
    """module_inputs_torch_nn_LSTM samples proj_size=2 and test_projections_lstm_* build them; rnnreg
    has no projection path and says so rather than building a different layer."""
    assert nn.LSTM(2, 3, 2, proj_size=proj_size).proj_size == proj_size
    with pytest.raises(ValueError, match="proj_size"):
        rnnreg.LSTM(2, 3, 2, proj_size=proj_size)
    assert rnnreg.LSTM(2, 3, 2, proj_size=0).proj_size == 0


@pytest.mark.parametrize("name", ["gru", "rnn_tanh"])
def test_proj_size_on_gru_and_rnn_is_refused_like_torch(name):
    torch_cls, our_cls, _ = CELLS[name]
    want = outcome(lambda: torch_cls(30, 20, 2, proj_size=10))
    assert_raises_like(want, outcome(lambda: our_cls(30, 20, 2, proj_size=10)))


@pytest.mark.parametrize("name", NAMES)
def test_single_layer_dropout_warns_like_torch(name):
    torch_cls, our_cls, extra = CELLS[name]
    messages = []
    for cls in (torch_cls, our_cls):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls(3, 5, 1, dropout=0.5, **extra)
            cls(3, 5, 2, dropout=0.5, **extra)  # stacked: the dropout acts, no warning
        messages.append([str(w.message) for w in caught if issubclass(w.category, UserWarning)])
    assert len(messages[0]) == 1 and messages[1] == messages[0]


POSITIONAL = {"lstm": (3, 5, 2, False, True, 0.25, True, 0), "gru": (3, 5, 2, False, True, 0.25, True),
              "rnn_tanh": (3, 5, 2, "tanh", False, True, 0.25, True),
              "rnn_relu": (3, 5, 2, "relu", False, True, 0.25, True)}
ATTRIBUTES = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
              "bidirectional", "proj_size", "mode", "nonlinearity", "_flat_weights_names")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("positional", [False, True])
def test_accepted_arguments_give_torchs_module(name, positional):
    """test_RNN_nonlinearity_passed_as_arg: torch.nn's positional order holds; then every attribute
    torch.nn keeps, the parameters (names, shapes, order) and ``all_weights`` are torch's."""
    torch_cls, our_cls, extra = CELLS[name]
    args, kw = (POSITIONAL[name], {}) if positional else ((3, 5), {"num_layers": 2, "bidirectional": True, **extra})
    ref, ours = torch_cls(*args, **kw), our_cls(*args, **kw)
    assert isinstance(ours, torch_cls)
    for attr in ATTRIBUTES:
        if hasattr(ref, attr):
            assert getattr(ours, attr) == getattr(ref, attr), attr
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    layout = [[tuple(w.shape) for w in group] for group in ref.all_weights]
    assert [[tuple(w.shape) for w in group] for group in ours.all_weights] == layout
    assert all(w is getattr(ours, n) for group, names in zip(ours.all_weights, ours._all_weights)
               for w, n in zip(group, names))


def test_rnn_nonlinearity_attribute_like_torch():
    """test_RNN_nonlinearity (the accepted values)."""
    for kw in ({}, {"nonlinearity": "tanh"}, {"nonlinearity": "relu"}):
        ref, ours = nn.RNN(1, 10, **kw), rnnreg.RNN(1, 10, **kw)
        assert (ours.nonlinearity, ours.mode) == (ref.nonlinearity, ref.mode)


def test_unknown_nonlinearity_is_refused_like_torch():
    """test_RNN_nonlinearity (the refusal, with its 'Unknown nonlinearity' message)."""
    want = outcome(lambda: nn.RNN(1, 10, nonlinearity="garbage"))
    assert_raises_like(want, outcome(lambda: rnnreg.RNN(1, 10, nonlinearity="garbage")))


# --- Forward arguments: test_rnn_args_check, test_cudnn_forward_exception (which runs on the CPU),
# test_RNN_cell_no_broadcasting, test_LSTM_cell_forward_hidden_size, test_error_RNN_seq_len_zero,
# the dtype error input of module_error_inputs_torch_nn_RNN_GRU, and RNN.forward's 2-D/3-D checks.

I, H, L, B, T = 3, 5, 2, 4, 6
BAD_SHAPES = {  # (input shape, hidden shape): one dimension off by a prime, as test_rnn_args_check
    "input_batch": ((T, 7, I), (L, B, H)),
    "hidden_batch": ((T, B, I), (L, 7, H)),
    "input_size": ((T, B, 7), (L, B, H)),
    "hidden_size": ((T, B, I), (L, B, 7)),
    "hidden_layers": ((T, B, I), (7, B, H)),
    "broadcastable_hidden": ((T, B, I), (L, 1, H)),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", list(BAD_SHAPES))
def test_bad_shapes_raise_like_torch(name, case):
    x_shape, h_shape = BAD_SHAPES[case]
    ref, ours = twins(name, I, H, L)
    x, bad, good = torch.randn(x_shape, dtype=F64), torch.randn(h_shape, dtype=F64), torch.randn(L, B, H, dtype=F64)
    for hx in [(bad, good), (good, bad)] if name == "lstm" else [bad]:
        assert_raises_like(outcome(lambda: ref(x, hx)), outcome(lambda: ours(x, hx)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_empty_sequence_raises_like_torch(name, path, bidirectional):
    ref, ours = twins(name, 5, 6, bidirectional=bidirectional)
    ours.implementation = path
    x = torch.ones(0, 10, 5, dtype=F64)
    assert_raises_like(outcome(lambda: ref(x)), outcome(lambda: ours(x)))


@pytest.mark.parametrize("name", NAMES)
def test_input_dtype_mismatch_raises_like_torch(name):
    torch_cls, our_cls, extra = CELLS[name]
    x = torch.randn(2, 4, 3, dtype=F64)  # float32 weights
    want = outcome(lambda: torch_cls(3, 5, **extra)(x))
    assert_raises_like(want, outcome(lambda: our_cls(3, 5, **extra)(x)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("x_shape,h_shape", [((5,), None), ((2, 3, 4, 5), None), ((4, 5), (1, 1, 6)),
                                             ((4, 1, 5), (1, 6))],
                         ids=["1d_input", "4d_input", "unbatched_input_3d_state", "batched_input_2d_state"])
def test_input_and_state_dims_raise_like_torch(name, x_shape, h_shape):
    """Same exception type; the wording is rnnreg's own (torch's tests assert no message here)."""
    ref, ours = twins(name, 5, 6)
    x = torch.randn(x_shape, dtype=F64)
    hx = None if h_shape is None else hidden(name, h_shape)
    assert_raises_like(outcome(lambda: ref(x, hx)), outcome(lambda: ours(x, hx)), same_message=False)


# --- Forward: test_modules' test_forward on the samples of module_inputs_torch_nn_RNN_GRU / _LSTM
# (2 layers, unbatched (3, 2) input, with and without a state, every bias / batch_first /
# bidirectional, checked against no_batch_dim_reference_*; and the packed samples),
# test_rnn_initial_hidden_state, test_RNN_input_size_zero, test_RNN_cell / test_LSTM_cell.

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bias,batch_first,bidirectional", list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize("with_state", [False, True])
def test_unbatched_samples_match_torch(name, bias, batch_first, bidirectional, with_state):
    size = 3 if with_state else 2
    ref, ours = twins(name, 2, size, 2, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    x = torch.randn(3, 2, dtype=F64)
    hx = hidden(name, (4 if bidirectional else 2, size)) if with_state else None
    assert_same(run(ours, x, hx), run(ref, x, hx), atol=1e-10)
    batch_dim = 0 if batch_first else 1
    hx_one = None if hx is None else tree_map(lambda t: t.unsqueeze(1), hx)
    out, state = ours(x.unsqueeze(batch_dim), hx_one)  # the same sequence as a batch of one
    assert_close(ours(x, hx), (out.squeeze(batch_dim), tree_map(lambda t: t.squeeze(1), state)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape,lengths", [((5, 2, 2), [5, 3]), ((5, 5, 2), [5, 3, 3, 2, 2])])
def test_packed_samples_match_torch(name, shape, lengths):
    ref, ours = twins(name, 2, 2, 2)
    packed = pack_padded_sequence(torch.randn(shape, dtype=F64), torch.tensor(lengths))
    (got, got_state), (want, want_state) = ours(packed), ref(packed)
    assert isinstance(got, PackedSequence) and got.sorted_indices is want.sorted_indices is None
    assert torch.equal(got.batch_sizes, want.batch_sizes)
    assert_close((got.data, got_state), (want.data, want_state))


@pytest.mark.parametrize("name", NAMES)
def test_zero_initial_state_equals_none(name):
    ref, ours = twins(name, 6, 4, 2)
    x = torch.randn(5, 8, 6, dtype=F64)
    zeros = hidden(name, (2, 8, 4), fill=torch.zeros)
    assert_close(ours(x, zeros), ours(x))
    assert_close(ours(x), ref(x))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", PATHS)
def test_empty_batch_like_torch(name, path):
    ref, ours = twins(name, 3, 4)
    ours.implementation = path
    x = torch.zeros(5, 0, 3, dtype=F64, requires_grad=True)
    got, want = ours(x), ref(x)
    assert [t.shape for t in flat(got)] == [t.shape for t in flat(want)]
    got[0].sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bias", [True, False])
def test_stepping_on_the_returned_state_matches_torch(name, bias):
    """test_RNN_cell / test_LSTM_cell feed a cell its own state six times, then backward; the layer
    analogue is six one-step calls, each given the state the last returned."""
    ref, ours = twins(name, 10, 20, bias=bias)
    x = torch.randn(6, 3, 10, dtype=F64)

    def unroll(layer):
        layer.zero_grad()
        outs, state = [], None
        for t in range(6):
            out, state = layer(x[t:t + 1], state)
            outs.append(out)
        seq = torch.cat(outs)  # (6, 3, 20)
        (seq.sum() + sum(s.sum() for s in flat(state))).backward()
        return seq, state, grads(layer)

    got = unroll(ours)
    assert_close(got, unroll(ref))
    assert_close(got[0], ours(x)[0])  # the same as the whole sequence in one call


# --- Gradients: test_modules' test_grad / test_gradgrad, test_LSTM_grad_and_gradgrad,
# test_GRU_grad_and_gradgrad, test_rnn_retain_variables, test_non_contiguous_tensors (and the
# non-contiguous cases of test_RNN_cpu_vs_cudnn).

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", PATHS)
def test_gradcheck_of_input_state_and_weights(name, path):
    """gradcheck perturbs the tensors it is given in place, the weights included, as test_grad does."""
    _, ours = twins(name, 2, 2, 2, bidirectional=True)
    ours.implementation = path
    x = torch.randn(2, 2, 2, dtype=F64, requires_grad=True)
    state = [t.requires_grad_() for t in flat(hidden(name, (4, 2, 2)))]

    def fn(x, *rest):  # rest: the initial state, then the weights (read by the layer itself)
        states = rest[:len(state)]
        return tuple(flat(ours(x, tuple(states) if name == "lstm" else states[0])))

    assert gradcheck(fn, (x, *state, *ours.parameters()), fast_mode=True)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", ["fused", "stepwise"])
@pytest.mark.parametrize("bias", [True, False])
def test_second_order_follows_torch_or_is_refused(name, path, bias):
    """test_LSTM_grad_and_gradgrad / test_GRU_grad_and_gradgrad (gradcheck and gradgradcheck of a
    1x3x4 input). The fused path differentiates twice like torch.nn; the C++ stepwise kernel's
    backward is hand-written and must refuse, not return a wrong second derivative."""
    _, ours = twins(name, 4, 4, bias=bias)
    ours.implementation = path
    x = torch.randn(1, 3, 4, dtype=F64, requires_grad=True)

    def fn(inp):
        return tuple(flat(ours(inp)))

    assert gradcheck(fn, (x,))
    if path == "stepwise" and fast_available():
        with pytest.raises(RuntimeError, match="differentiate twice"):
            gradgradcheck(fn, (x,))
    else:
        assert gradgradcheck(fn, (x,))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", PATHS)
def test_backward_through_a_retained_graph_repeats(name, path):
    ref, ours = twins(name, 4, 5, 2)
    ours.implementation = path
    x = torch.randn(5, 6, 4, dtype=F64, requires_grad=True)
    out = ours(x)[0]
    rounds = []
    for _ in range(3):
        ours.zero_grad()
        x.grad = None
        out.sum().backward(retain_graph=True)
        rounds.append((x.grad.clone(), grads(ours)))
    assert_close(rounds[1], rounds[0])
    assert_close(rounds[2], rounds[0])
    ref(x.detach().requires_grad_())[0].sum().backward()
    assert_close(rounds[0][1], grads(ref))


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values in every other element of a twice-as-wide buffer (test_non_contiguous_tensors)."""
    out = torch.repeat_interleave(t.detach(), 2, dim=-1)[..., ::2]
    assert not out.is_contiguous()
    return out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", PATHS)
def test_non_contiguous_input_state_and_grad_output(name, path):
    ref, ours = twins(name, 3, 4, 2, bidirectional=True)
    ours.implementation = path
    x, hx = torch.randn(5, 2, 3, dtype=F64), hidden(name, (4, 2, 4))
    upstream = [torch.randn(5, 2, 8, dtype=F64)] + [torch.randn(4, 2, 4, dtype=F64) for _ in flat(hx)]

    def forward_backward(layer, make):
        layer.zero_grad()
        xi = make(x).requires_grad_()
        states = [make(t).requires_grad_() for t in flat(hx)]
        result = layer(xi, tuple(states) if name == "lstm" else states[0])
        torch.autograd.backward(flat(result), [make(g) for g in upstream])
        return flat(result), xi.grad, [s.grad for s in states], grads(layer)

    assert_close(forward_backward(ours, non_contiguous), forward_backward(ref, torch.clone))


# --- Dropout and the training flag: test_RNN_dropout, test_RNN_dropout_state,
# test_RNN_change_dropout (cuDNN-only upstream, but about torch.nn's CPU semantics too),
# test_RNN_cpu_vs_cudnn_with_dropout, test_modules' test_if_train_and_eval_modes_differ.

@pytest.mark.parametrize("p", [0.0, 0.276, 0.731, 1.0])
@pytest.mark.parametrize("train", [True, False])
def test_dropout_acts_between_layers_only(p, train):
    """All-ones weights, ReLU: layer 0 emits 10 on each of its 200 units, so each unit of layer 1
    reads 10 / (1 - p) times the number of units the dropout kept; eval and p = 0 read 2000."""
    units = 200
    ref, ours = twins("rnn_relu", 10, units, 2, bias=False, dropout=p)
    results = []
    for layer in (ours, ref):
        layer.train(train)
        with torch.no_grad():
            for weight in layer.parameters():
                weight.fill_(1.0)
        torch.manual_seed(0)
        results.append(layer(torch.ones(1, 1, 10, dtype=F64), torch.zeros(2, 1, units, dtype=F64)))
    assert_close(*results)
    out, h_n = results[0]
    value = out[0, 0, 0].item()
    assert out.min() == out.max()
    if p == 0.0 or not train:
        assert value == 10 * units
    elif p == 1.0:
        assert value == 0
    else:
        kept = value * (1 - p) / 10
        assert abs(kept - round(kept)) < 1e-6
        assert abs(kept - units * (1 - p)) < 5 * math.sqrt(units * p * (1 - p))  # a binomial count
    assert torch.all(h_n[0] == 10) and torch.all(h_n[1] == value)  # h_n is taken before dropout


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", PATHS)
def test_dropout_masks_are_torchs_under_the_same_seed(name, path):
    ref, ours = twins(name, 3, 4, 3, dropout=0.4, bidirectional=True)
    ours.implementation = path
    x = torch.randn(5, 2, 3, dtype=F64)
    results = []
    for layer in (ours, ref):
        torch.manual_seed(7)
        results.append(run(layer, x))
    assert_same(*results, atol=1e-10)


def differs(a, b) -> bool:
    return not all(torch.equal(u, v) for u, v in zip(flat(a), flat(b)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p", [0.0, 0.1234])
@pytest.mark.parametrize("train", [True, False])
def test_dropout_state_survives_save_and_load(name, p, train):
    ref, ours = twins(name, 8, 64, 2, bias=False, dropout=p)
    ref.train(train)
    ours.train(train)
    x, hx = torch.rand(1, 1, 8, dtype=F64), hidden(name, (2, 1, 64), fill=torch.rand)
    first, second = ours(x, hx), ours(x, hx)
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    loaded.flatten_parameters()
    third = loaded(x, hx)
    random = p > 0 and train
    assert differs(first, second) == random and differs(first, third) == random
    torch.manual_seed(1)
    got = loaded(x, hx)
    torch.manual_seed(1)
    assert_close(got, ref(x, hx))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [True, False])
def test_dropout_changed_after_construction_takes_effect(name, train):
    ref, ours = twins(name, 20, 20, 2)
    ref.train(train)
    ours.train(train)
    x = torch.rand(3, 2, 20, dtype=F64)
    previous = None
    for seed, p in enumerate((0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0)):
        ref.dropout = ours.dropout = p
        first, second = ours(x), ours(x)
        assert differs(first, second) == (train and 0 < p < 1)
        if previous is not None:
            assert differs(first, previous) == train
        previous = first
        torch.manual_seed(seed)
        got = ours(x)
        torch.manual_seed(seed)
        assert_close(got, ref(x))


@pytest.mark.parametrize("name", NAMES)
def test_forward_reads_the_training_flag_like_torch(name):
    """test_if_train_and_eval_modes_differ: with ``training`` deleted, forward must fail on it
    (RNN / GRU / LSTM are train_and_eval_differ=True)."""
    ref, ours = twins(name, 2, 2)
    x = torch.randn(3, 2, dtype=F64)
    for layer in (ref, ours):
        delattr(layer, "training")
    errors = [outcome(lambda: layer(x)) for layer in (ref, ours)]
    assert all(isinstance(e, AttributeError) and "'training'" in str(e) for e in errors), errors


# --- The module around the layer: test_modules' test_repr, test_pickle, test_factory_kwargs,
# test_device_ctx_init, test_to, test_to_empty, test_memory_format; test_nn's
# test_load_state_dict_assign_meta, test_RNN_cudnn_weight_norm, test_rnn_weight_norm,
# test_cudnn_weight_tying, test_cudnn_weight_format, test_partial_flat_weights, the all_weights
# copies of test_RNN_cpu_vs_cudnn; functional_call (pytorch PR #91111, issue #90500).

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bias": False, "batch_first": True, "dropout": 0.5,
                                     "bidirectional": True}], ids=["defaults", "all_set"])
def test_repr_is_torchs_plus_our_options(name, kw):
    ref, ours = twins(name, 2, 3, **kw)
    want, got = repr(ref), repr(ours)
    assert got == want or got.startswith(want[:-1] + ", "), (got, want)
    assert str(ours) == got


def round_trip(module, how: str):
    if how == "deepcopy":
        return copy.deepcopy(module)
    if how == "pickle":
        return pickle.loads(pickle.dumps(module))
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("how", ["torch.save", "pickle", "deepcopy"])
def test_whole_module_round_trip(name, how):
    _, ours = twins(name, 2, 3, 2, bidirectional=True)
    twin = round_trip(ours, how)
    x = torch.randn(4, 2, 2, dtype=F64)
    assert type(twin) is type(ours)
    assert_close(twin(x), ours(x))
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        twin.weight_hh_l0.add_(1.0)  # the copy owns its weights
    assert differs(twin(x), ours(x))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_factory_kwargs_like_torch(name, dtype):
    torch_cls, our_cls, extra = CELLS[name]
    ref = torch_cls(2, 3, 2, device="cpu", dtype=dtype, **extra)
    ours = our_cls(2, 3, 2, device="cpu", dtype=dtype, **extra)
    placed = [(n, p.device, p.dtype) for n, p in ref.named_parameters()]
    assert [(n, p.device, p.dtype) for n, p in ours.named_parameters()] == placed
    assert all(p.dtype == dtype for p in ours.parameters())
    assert list(ours.buffers()) == list(ref.buffers()) == []


@pytest.mark.parametrize("name", NAMES)
def test_construction_under_a_device_context(name):
    _, our_cls, extra = CELLS[name]
    cpu = our_cls(2, 3, 2, **extra)
    with torch.device("meta"):
        meta = our_cls(2, 3, 2, **extra)
    pairs = list(zip(meta.parameters(), cpu.parameters(), strict=True))
    assert all(m.is_meta and (m.shape, m.dtype, m.stride()) == (c.shape, c.dtype, c.stride()) for m, c in pairs)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("swap", [False, True])
def test_to_empty_from_meta_like_torch(name, swap, swap_mode):
    swap_mode(swap)
    torch_cls, our_cls, extra = CELLS[name]

    def materialise(cls):
        layer = cls(2, 3, 2, device="meta", dtype=F64, **extra)
        before = [id(p) for p in layer.parameters()]
        layer.to_empty(device="cpu")
        params = list(layer.parameters())
        assert all(isinstance(p, nn.Parameter) and p.device.type == "cpu" and p.dtype == F64 for p in params)
        layer.reset_parameters()
        return before == [id(p) for p in params], layer

    (kept, ours), (kept_ref, _) = materialise(our_cls), materialise(torch_cls)
    assert kept == kept_ref
    assert all(torch.isfinite(t).all() for t in flat(ours(torch.randn(3, 2, dtype=F64))))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("set_grad", [False, True])
def test_to_dtype_like_torch(name, swap, set_grad, swap_mode):
    ref, ours = twins(name, 2, 3, 2, dtype=torch.float32)
    swap_mode(swap)

    def convert(layer):
        if set_grad:
            for p in layer.parameters():
                p.grad = torch.ones_like(p)
        before = [id(p) for p in layer.parameters()]
        layer.to(dtype=F64)
        params = list(layer.parameters())
        assert all(w is getattr(layer, n) for w, n in zip(layer._flat_weights, layer._flat_weights_names))
        return ([type(p) for p in params], [p.dtype for p in params],
                [None if p.grad is None else p.grad.dtype for p in params], before == [id(p) for p in params])

    assert convert(ours) == convert(ref)
    x = torch.randn(3, 2, 2, dtype=F64)
    assert_close(ours(x), ref(x))


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_assign_onto_meta(name):
    torch_cls, our_cls, extra = CELLS[name]
    ref = torch_cls(2, 3, 2, **extra).double()
    state = ref.state_dict()
    ours = our_cls(2, 3, 2, device="meta", dtype=F64, **extra)
    ours.load_state_dict(state, assign=True)
    assert all(isinstance(p, nn.Parameter) and not p.is_meta for p in ours.parameters())
    assert ours.weight_hh_l0.data_ptr() == state["weight_hh_l0"].data_ptr()  # assigned, not copied
    x = torch.randn(4, 2, 2, dtype=F64)
    assert_close(ours(x), ref(x))


@pytest.mark.parametrize("name", NAMES)
def test_functional_call_uses_the_given_weights(name):
    ref, ours = twins(name, 2, 3, 2)
    other = CELLS[name][0](2, 3, 2, **CELLS[name][2]).double()
    x = torch.randn(4, 2, 2, dtype=F64)
    given = {n: p.detach().clone().requires_grad_() for n, p in other.named_parameters()}
    got = torch.func.functional_call(ours, given, (x,))
    assert_close(got, other(x))
    got[0].sum().backward()
    assert all(t.grad is not None for t in given.values())
    assert_close(ours(x), ref(x))  # its own weights again afterwards


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("weight", ["weight_hh_l0", "weight_ih_l1"])
def test_weight_norm_round_trip_like_torch(name, weight):
    ref, ours = twins(name, 3, 4, 2)
    x = torch.randn(5, 2, 3, dtype=F64)

    def trace(layer):
        before = layer(x)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch deprecates the old weight_norm
            nn.utils.weight_norm(layer, name=weight)
        on = ([n for n, _ in layer.named_parameters()], sum(isinstance(w, nn.Parameter) for w in layer._flat_weights))
        during = layer(x)[0]
        nn.utils.remove_weight_norm(layer, name=weight)
        off = ([n for n, _ in layer.named_parameters()], sum(isinstance(w, nn.Parameter) for w in layer._flat_weights))
        return (before, during, layer(x)[0]), on, off

    (outs, on, off), (want_outs, want_on, want_off) = trace(ours), trace(ref)
    assert_close(outs, want_outs)
    assert_close(outs[1], outs[0])
    assert (on, off) == (want_on, want_off)


@pytest.mark.parametrize("name", NAMES)
def test_parametrized_weight_norm_like_torch(name):
    ref, ours = twins(name, 3, 4, 2)
    for layer in (ref, ours):
        nn.utils.parametrizations.weight_norm(layer, name="weight_hh_l0")
    x = torch.randn(5, 2, 3, dtype=F64)
    assert_same(run(ours, x), run(ref, x), atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", PATHS)
def test_tied_weights_like_torch(name, path):
    ref, ours = twins(name, 3, 4, bidirectional=True)
    ours.implementation = path
    for layer in (ref, ours):
        layer.bias_ih_l0_reverse = layer.bias_ih_l0
    assert len(list(ours.parameters())) == len(list(ref.parameters()))
    x = torch.randn(5, 2, 3, dtype=F64)
    for _ in range(2):  # before and after an SGD step on the shared bias
        assert_same(run(ours, x), run(ref, x), atol=1e-10)
        for layer in (ref, ours):
            torch.optim.SGD(layer.parameters(), lr=0.1).step()


@pytest.mark.parametrize("name", NAMES)
def test_weight_storage_replaced_in_place(name):
    """test_cudnn_weight_format, its CPU part: a weight whose storage ``set_`` replaced gives the same
    outputs and gradients, and reads the new storage from then on."""
    results, x = [], torch.randn(5, 2, 3, dtype=F64)
    for layer in twins(name, 3, 4, 2):
        before = run(layer, x)
        storage = layer.weight_hh_l0.detach().clone()
        with torch.no_grad():
            layer.weight_hh_l0.set_(storage)
        assert_same(run(layer, x), before, atol=0)
        storage.fill_(0.25)
        results.append(run(layer, x))
    assert_same(*results, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_weights_copied_through_all_weights(name):
    """test_RNN_cpu_vs_cudnn moves weights between two modules through ``all_weights`` and reads the
    weight gradients there."""
    torch_cls, our_cls, extra = CELLS[name]
    ref = torch_cls(3, 4, 2, bidirectional=True, **extra).double()
    ours = our_cls(3, 4, 2, bidirectional=True, **extra).double()
    with torch.no_grad():
        for ours_group, ref_group in zip(ours.all_weights, ref.all_weights, strict=True):
            for ours_weight, ref_weight in zip(ours_group, ref_group, strict=True):
                ours_weight.copy_(ref_weight)
    x = torch.randn(5, 2, 3, dtype=F64)
    assert_same(run(ours, x), run(ref, x), atol=1e-10)
    assert_close([[w.grad for w in group] for group in ours.all_weights],
                 [[w.grad for w in group] for group in ref.all_weights])


@pytest.mark.parametrize("name", NAMES)
def test_deleted_weight_survives_conversion(name):
    """test_partial_flat_weights deletes a weight, moves the module (there to CUDA, here to float64)
    and puts the weight back."""
    ref, ours = twins(name, 3, 4, 2, dtype=torch.float32)
    x = torch.randn(3, 2, 3)
    results = []
    for layer in (ours, ref):
        want = layer(x)[0]
        weight = layer.weight_hh_l0
        del layer.weight_hh_l0
        assert not hasattr(layer, "weight_hh_l0")
        layer.double()
        layer.weight_hh_l0 = nn.Parameter(weight.detach().double())
        results.append(layer(x.double())[0])
        assert_close(results[-1].float(), want)
    assert_close(*results)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("x_shape", [(3, 3), (2, 5, 3)], ids=["unbatched", "batched"])
def test_memory_format_and_output_layout_like_torch(name, batch_first, x_shape):
    """test_memory_format: for 2-D and 3-D inputs only contiguous_format and preserve_format apply;
    converting the module changes no result, and outputs and input gradients are laid out (contiguous
    or a transposed view) as torch.nn lays out its own."""
    ref, ours = twins(name, 3, 4, 2, batch_first=batch_first)
    x = torch.randn(x_shape, dtype=F64)
    for memory_format in (torch.preserve_format, torch.contiguous_format):
        for layer in (ref, ours):
            layer.to(memory_format=memory_format)
        got, want = run(ours, x), run(ref, x)
        assert_same(got, want, atol=1e-10)
        layout = [t.is_contiguous() for t in (*want[0], want[2])]
        assert [t.is_contiguous() for t in (*got[0], got[2])] == layout


# --- Variable-length batches: test_variable_sequence, and the variable_len / lens_as_tensor cases
# of test_RNN_cpu_vs_cudnn.

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_batch_equals_each_sequence_alone(name, path, bidirectional):
    """Lengths as a list for ours, as a tensor for torch.nn: the packings are the same."""
    ref, ours = twins(name, 3, 4, 2, bidirectional=bidirectional)
    ours.implementation = path
    lengths = [6, 6, 4, 2, 1]
    x = torch.randn(6, 5, 3, dtype=F64)
    packed_out, packed_state = ours(pack_padded_sequence(x, lengths))
    padded, _ = pad_packed_sequence(packed_out)
    for b, length in enumerate(lengths):
        out, state = ours(x[:length, b:b + 1])
        assert_close(out[:, 0], padded[:length, b])
        assert_close([s[:, 0] for s in flat(state)], [s[:, b] for s in flat(packed_state)])
    want_out, want_state = ref(pack_padded_sequence(x, torch.tensor(lengths)))
    assert_close((packed_out.data, packed_state), (want_out.data, want_state))


# --- CUDA (skipped without it): test_rnn_check_device (one GPU), test_modules'
# test_cpu_gpu_parity and test_multiple_device_transfer, test_rnn_fused.

@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_device_mismatch_raises_like_torch(name):
    ref, ours = twins(name, 3, 5, 2, dtype=torch.float32)
    x, hx = torch.randn(6, 4, 3), hidden(name, (2, 4, 5))
    hx = tree_map(lambda t: t.float(), hx)
    on_gpu = tree_map(lambda t: t.cuda(), hx)
    cases = [
        (lambda m: m(x.cuda()), "Input and parameter tensors are not at the same device"),
        (lambda m: copy.deepcopy(m).cuda()(x), "Input and parameter tensors are not at the same device"),
        (lambda m: m(x, on_gpu), "Input and hidden tensors are not at the same device"),
        (lambda m: copy.deepcopy(m).cuda()(x.cuda(), hx), "Input and hidden tensors are not at the same device"),
    ]
    for case, message in cases:
        want, got = outcome(lambda: case(ref)), outcome(lambda: case(ours))
        assert message in str(want)
        assert_raises_like(want, got, same_message=False)
        assert message in str(got), got


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [True, False])
def test_cpu_gpu_parity(name, training):
    """Unlike torch.nn on cuDNN, rnnreg differentiates in eval mode as well (base._kernel_train)."""
    _, ours = twins(name, 3, 4, 2, bidirectional=True)
    gpu = copy.deepcopy(ours).cuda()
    x, hx = torch.randn(5, 2, 3, dtype=F64), hidden(name, (4, 2, 4))
    upstream = [torch.randn(5, 2, 8, dtype=F64)] + [torch.randn(4, 2, 4, dtype=F64) for _ in flat(hx)]

    def forward_backward(layer, device):
        layer.train(training).zero_grad()
        xi = x.to(device).requires_grad_()
        result = layer(xi, tree_map(lambda t: t.to(device), hx))
        torch.autograd.backward(flat(result), [g.to(device) for g in upstream])
        return [t.cpu() for t in flat(result)], xi.grad.cpu(), {k: g.cpu() for k, g in grads(layer).items()}

    assert_close(forward_backward(gpu, "cuda"), forward_backward(ours, "cpu"), atol=4e-4, rtol=0)
    gpu.cpu()
    assert all(p.device.type == "cpu" for p in gpu.parameters())
    gpu.cuda()
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    assert_close(flat(gpu(x.cuda())), flat(ours(x)), atol=4e-4, rtol=0, check_device=False)
