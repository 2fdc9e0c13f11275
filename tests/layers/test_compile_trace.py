"""rnnreg's layers under torch.compile, torch.export and torch.jit.trace.

Being torch.nn.LSTM / GRU / RNN subclasses, they are treated by dynamo as torch.nn's are: a
compiled layer runs eagerly unless ``torch._dynamo.config.allow_rnn=True``, and then it is traced. Traced, the stepwise configurations go through
the registered C++ ops (fake kernels, autograd) and compile with ``fullgraph=True``, as do the
fused GRU and Elman RNN. The fused LSTM's ATen call stays a graph break: torch 2.13 lowers
torch.lstm on the CPU to an mkldnn_rnn_layer call its schema rejects (torch.nn.LSTM itself
fails under fullgraph). torch.jit.trace failed its default check because the kernels' training
flag followed the grad mode; under tracing it is the module's mode on the fused path, as torch.nn
passes it, and always on for the stepwise kernel."""

from __future__ import annotations

import pytest
import torch

import rnnreg

pytestmark = pytest.mark.slow

CLASSES = [rnnreg.LSTM, rnnreg.GRU, rnnreg.RNN]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def allow_rnn():
    """Let dynamo trace into torch.nn RNN modules (and so into ours), as torch.nn's users do."""
    with torch._dynamo.config.patch(allow_rnn=True):
        yield


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_compiled_fused_layers_match_eager_in_eval_and_train_in_train_mode(cls):
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, dropout=0.0).eval()
    x = torch.randn(6, 2, 3)
    compiled = torch.compile(layer)
    out, hidden = compiled(x)
    want, want_hidden = layer(x)
    torch.testing.assert_close(out, want)
    for got, ref in zip(hidden if isinstance(hidden, tuple) else (hidden,),
                        want_hidden if isinstance(want_hidden, tuple) else (want_hidden,)):
        torch.testing.assert_close(got, ref)
    layer.train()
    out, _ = compiled(x)
    out.pow(2).sum().backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters()}
    layer.zero_grad()
    layer(x)[0].pow(2).sum().backward()
    for name, p in layer.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, msg=name)


TRACED = [(cls, {}) for cls in CLASSES] + [
    (rnnreg.LSTM, {"zoneout_h_p": 0.1, "zoneout_c_p": 0.2}), (rnnreg.LSTM, {"peepholes": True}),
    (rnnreg.GRU, {"zoneout_h_p": 0.2}), (rnnreg.RNN, {"nonlinearity": "trec"})]


@pytest.mark.parametrize("cls,kw", TRACED, ids=[f"{c.__name__}-{'-'.join(k) or 'fused'}" for c, k in TRACED])
@pytest.mark.parametrize("with_h0", [False, True], ids=["no-h0", "h0"])
def test_jit_trace_passes_its_default_check_in_eval(cls, kw, with_h0):
    """The stepwise kernel's training flag followed the grad mode, which the default check
    changes: 'Graphs differed' for every stepwise configuration (fast.py's _needs_grad)."""
    torch.manual_seed(0)
    layer = cls(3, 4, **kw).eval()
    x, x2 = torch.randn(6, 2, 3), torch.randn(6, 2, 3)
    h0 = torch.randn(1, 2, 4)
    hx = ((h0, torch.randn(1, 2, 4)) if cls is rnnreg.LSTM else h0) if with_h0 else None
    args = (x, hx) if with_h0 else (x,)
    traced = torch.jit.trace(layer, args)        # check_trace=True by default
    torch.testing.assert_close(traced(x2, *args[1:])[0], layer(x2, *args[1:])[0])
    traced(x2, *args[1:])[0].sum().backward()  # a trace in eval still differentiates
    assert layer.weight_hh_l0.grad is not None


STEPWISE = [(rnnreg.LSTM, {"zoneout_h_p": 0.1, "zoneout_c_p": 0.2}), (rnnreg.LSTM, {"peepholes": True}),
            (rnnreg.LSTM, {"recurrent_dropout": 0.2}), (rnnreg.LSTM, {"recurrent_dropout": 0.2,
                                                                     "recurrent_dropout_mode": "semeniuta"}),
            (rnnreg.GRU, {"zoneout_h_p": 0.2}), (rnnreg.RNN, {"nonlinearity": "trec"}),
            (rnnreg.LSTM, {"weight_p": 0.3, "input_p": 0.2, "output_p": 0.2, "weight_noise_std": 0.01})]


IDS = [f"{c.__name__}-{'-'.join(k)}" for c, k in STEPWISE]


def _fused_lstm(layer) -> bool:
    """Whether this call runs torch's LSTM kernel, which no compiler traces (module docstring)."""
    return isinstance(layer, rnnreg.LSTM) and layer._path(layer.training, None, False) == "fused"


@pytest.mark.parametrize("cls,kw", STEPWISE, ids=IDS)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_every_regularizer_compiles_and_draws_eager_s_masks(cls, kw, mode, allow_rnn):
    """Same seed, same masks: the compiled module's outputs and gradients equal eager's, in one
    graph wherever torch's kernels allow it. Masks drawn by torch ops inside the graph (weight
    drop, locked dropout, weight noise) follow inductor's own generator unless told to fall back
    to eager's, as torch.nn.Dropout's do; the C++ ops take a seed drawn the same way."""
    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    layer = getattr(cls(3, 4, **kw), mode)()
    x = torch.randn(6, 2, 3)
    with inductor_config.patch(fallback_random=True):
        _compare_with_eager(layer, torch.compile(layer, fullgraph=not _fused_lstm(layer)), x)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_without_allow_rnn_dynamo_refuses_the_layer_as_it_refuses_torch_nn_s(cls):
    """A subclass of torch.nn's class, the compiled layer falls back to eager (a full graph is
    refused with dynamo's own message), exactly as a compiled torch.nn layer does."""
    x = torch.randn(6, 2, 3)
    for layer in (cls(3, 4, zoneout_h_p=0.2).eval(), getattr(torch.nn, cls.__name__)(3, 4)):
        torch._dynamo.reset()
        with pytest.raises(Exception, match="RNN, GRU, or LSTM"):
            torch.compile(layer, fullgraph=True)(x)
        torch._dynamo.reset()
        torch.testing.assert_close(torch.compile(layer)(x)[0], layer(x)[0])


@pytest.mark.parametrize("cls,kw", STEPWISE, ids=IDS)
def test_every_configuration_exports_in_eval(cls, kw):
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, **kw).eval()
    x = torch.randn(6, 2, 3)
    exported = torch.export.export(layer, (x,))
    x2 = torch.randn(6, 2, 3)  # the program is not specialised to the example's values
    torch.testing.assert_close(exported.module()(x2)[0], layer(x2)[0])


def test_a_trace_in_training_draws_fresh_masks_at_every_call():
    """The masks' seed is a traced tensor, not a constant baked into the trace."""
    layer = rnnreg.LSTM(3, 4, zoneout_h_p=0.5, zoneout_c_p=0.5, recurrent_dropout=0.5)
    x = torch.randn(6, 2, 3)
    traced = torch.jit.trace(layer, (x,), check_trace=False)  # random by design: no re-run check
    assert not torch.equal(traced(x)[0], traced(x)[0])
    torch.manual_seed(3)
    got = traced(x)[0]
    torch.manual_seed(3)
    torch.testing.assert_close(got, layer(x)[0])


def _compare_with_eager(layer, compiled, x):
    results = []
    for run in (compiled, layer):
        layer.zero_grad()
        torch.manual_seed(1)
        out, _ = run(x)
        out.pow(2).sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in layer.named_parameters()}))
    (got, got_grads), (want, want_grads) = results
    torch.testing.assert_close(got, want)
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], msg=name)


def test_a_stepwise_layer_compiles_in_one_graph_under_cpu_autocast(allow_rnn):
    """The float32 upcast around the C++ op (kernels/precision.py) logs from eager code only, so
    it does not break the graph."""
    layer = rnnreg.LSTM(3, 4, zoneout_h_p=0.2).eval()
    x = torch.randn(6, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = torch.compile(layer, fullgraph=True)(x)[0]
        want = layer(x)[0]
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got, want)


DYNAMIC = [(rnnreg.GRU, {}), (rnnreg.RNN, {}), (rnnreg.GRU, {"zoneout_h_p": 0.2, "input_p": 0.3}),
           (rnnreg.LSTM, {"zoneout_h_p": 0.2, "hidden_p": 0.3, "weight_p": 0.2})]


@pytest.mark.parametrize("cls,kw", DYNAMIC, ids=[f"{c.__name__}-{'-'.join(k) or 'fused'}" for c, k in DYNAMIC])
def test_dynamic_shapes_compile_in_one_graph(cls, kw, allow_rnn):
    """``dynamic=True`` makes the rates symbolic floats, which the rate checks' math.isnan broke
    under fullgraph for every layer (torch.nn.GRU compiles so); the checks compare instead."""
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, **kw).eval()
    compiled = torch.compile(layer, fullgraph=True, dynamic=True)
    for shape in ((6, 2, 3), (4, 5, 3)):
        x = torch.randn(shape)
        torch.testing.assert_close(compiled(x)[0], layer(x)[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cls,kw", [(rnnreg.LSTM, {"zoneout_h_p": 0.2, "peepholes": True}),
                                    (rnnreg.GRU, {"zoneout_h_p": 0.2})], ids=["LSTM", "GRU"])
def test_a_half_precision_stepwise_model_exports_in_eval(cls, kw, dtype):
    """A bf16 / fp16 model runs the step loop, whose in-place buffers exported into a program
    that failed when called with grad enabled; under export the plain-autograd twin runs."""
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, **kw).eval().to(dtype)
    exported = torch.export.export(layer, (torch.randn(6, 2, 3, dtype=dtype),)).module()
    x = torch.randn(6, 2, 3, dtype=dtype)
    got = exported(x)[0]  # grad mode on, parameters requiring grad
    torch.testing.assert_close(got.float(), layer(x)[0].float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_surprisal_zoneout_signals_compile_in_one_graph_and_are_still_checked(mode, allow_rnn):
    """zoneout_keep's value check read the tensor on the host, which broke fullgraph; under
    compile it is an assertion in the graph (RuntimeError, same message; eager: ValueError)."""
    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    layer = getattr(rnnreg.LSTM(3, 4, zoneout_h_p=0.2), mode)()
    x, keep = torch.randn(5, 2, 3), torch.rand(5, 2, 1)
    with inductor_config.patch(fallback_random=True):
        compiled = torch.compile(layer, fullgraph=True)
        torch.manual_seed(1)
        got = compiled(x, zoneout_keep=keep)[0]
        torch.manual_seed(1)
        torch.testing.assert_close(got, layer(x, zoneout_keep=keep)[0])
        with pytest.raises(RuntimeError, match="zoneout_keep holds probabilities"):
            compiled(x, zoneout_keep=keep + 2.0)
    with pytest.raises(ValueError, match="zoneout_keep holds probabilities"):
        layer(x, zoneout_keep=keep + 2.0)


@pytest.mark.parametrize("kw", [{"zoneout_h_p": 0.2}, {"implementation": "stepwise", "bidirectional": True}],
                         ids=["zoneout", "stepwise-bidirectional"])
def test_padded_batches_on_the_stepwise_path_compile_in_one_graph(kw, allow_rnn):
    """The lengths' range check read them on the host (a break under fullgraph); under compile it
    is an assertion in the graph, as zoneout_keep's. The fused path packs the batch: a break."""
    torch.manual_seed(0)
    layer = rnnreg.LSTM(3, 4, **kw).eval()
    x, lengths = torch.randn(5, 3, 3), torch.tensor([5, 3, 2])
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(compiled(x, lengths=lengths)[0], layer(x, lengths=lengths)[0])
    with pytest.raises(RuntimeError, match="lengths must lie in"):
        compiled(x, lengths=torch.tensor([6, 3, 2]))
