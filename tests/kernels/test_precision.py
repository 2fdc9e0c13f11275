"""bf16 and fp16 on the CPU: every path runs under autocast and on low-precision models, close to
float32, where it crashed before (the C++ ops under autocast: "expected scalar type Float but found
BFloat16"; oneDNN's LSTM under fp16 autocast, as torch.nn.LSTM itself does)."""

from __future__ import annotations

import logging

import pytest
import torch

import rnnreg
from rnnreg.kernels.precision import outside_cpu_autocast

CONFIGS = [(rnnreg.LSTM, {}), (rnnreg.GRU, {}), (rnnreg.RNN, {}),
           (rnnreg.LSTM, {"zoneout_h_p": 0.1, "zoneout_c_p": 0.2}), (rnnreg.LSTM, {"peepholes": True}),
           (rnnreg.LSTM, {"recurrent_dropout": 0.2}), (rnnreg.GRU, {"zoneout_h_p": 0.2}),
           (rnnreg.RNN, {"nonlinearity": "trec", "trec_threshold": 0.1})]
# The reference twin, as implementation="reference" and a CPU without the C++ extension run it
# (float32 inside under CPU autocast, kernels/__init__.py; before, a zoneout Elman RNN raised).
REFERENCE = {"implementation": "reference"}
CONFIGS += [(rnnreg.RNN, {**REFERENCE, "zoneout_h_p": 0.2}), (rnnreg.GRU, {**REFERENCE, "zoneout_h_p": 0.2}),
            (rnnreg.LSTM, {**REFERENCE, "zoneout_h_p": 0.1, "recurrent_dropout": 0.2})]
IDS = [f"{c.__name__}-{'-'.join(k) or 'fused'}" for c, k in CONFIGS]
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 3e-3}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=IDS)
def test_autocast_runs_every_path_close_to_float32(cls, kw, dtype):
    torch.manual_seed(0)
    layer = cls(3, 8, num_layers=2, **kw).eval()
    x = torch.randn(6, 2, 3)
    want = layer(x)[0]
    with torch.autocast("cpu", dtype=dtype):
        out, _ = layer(x)
    assert out.dtype == _torch_dtype(cls, dtype)
    torch.testing.assert_close(out.float(), want, atol=TOLERANCE[dtype], rtol=0)
    layer.train()
    with torch.autocast("cpu", dtype=dtype):
        out, _ = layer(x)
    out.float().pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in layer.parameters())


def _torch_dtype(cls, dtype):
    """The dtype torch.nn's own layer hands on under CPU autocast (GRU: float32). oneDNN's LSTM
    has no primitive for fp16, nor for bf16 on a CPU without native bf16 (torch.nn.LSTM fails
    there): autocast's dtype, which torch.nn.LSTM returns where it runs."""
    with torch.autocast("cpu", dtype=dtype):
        try:
            return getattr(torch.nn, cls.__name__)(3, 8)(torch.randn(2, 1, 3))[0].dtype
        except RuntimeError:  # "could not create a primitive descriptor": oneDNN's LSTM only
            assert cls is rnnreg.LSTM
            return dtype


def test_the_fused_lstm_runs_under_bf16_autocast_where_torch_nn_lstm_fails():
    # torch.nn.LSTM fails under CPU bf16 autocast where oneDNN has no bf16 LSTM ("could not create
    # a primitive descriptor", e.g. AVX2-only CPUs): there the fused LSTM is upcast, elsewhere it
    # is handed to oneDNN's bf16 primitive as torch.nn.LSTM's is.
    torch.manual_seed(0)
    layer = rnnreg.LSTM(3, 8, num_layers=2)
    x = torch.randn(6, 2, 3)
    want = layer(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want, atol=TOLERANCE[torch.bfloat16], rtol=0)
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("passthrough", [True, False])
def test_bf16_passthrough_hands_the_kernel_autocast_or_float32(passthrough):
    seen = []

    @outside_cpu_autocast(bf16_passthrough=lambda: passthrough)
    def doubled(x):  # its own name: the upcast is logged once per kernel name
        seen.append((torch.is_autocast_enabled("cpu"), x.dtype))
        return x * 2

    x = torch.ones(3, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = doubled(x)
    assert seen == [(True, torch.bfloat16)] if passthrough else seen == [(False, torch.float32)]
    assert out.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.float16):  # fp16 is never passed through
        doubled(x)
    assert seen[-1] == (False, torch.float32)


def test_the_onednn_bf16_lstm_probe_leaves_the_global_generator_alone():
    """The probe's first call drew its LSTM's weights from the global generator, so the first
    bf16 call of a process (a resumed run's too) shifted every mask after it."""
    from rnnreg.kernels.precision import onednn_bf16_lstm

    layer, x = rnnreg.LSTM(3, 4, num_layers=2, hidden_p=0.5), torch.randn(5, 2, 3)

    def run():
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return layer(x)[0]

    onednn_bf16_lstm.cache_clear()  # the next call probes
    torch.testing.assert_close(run(), run(), rtol=0, atol=0)


def test_the_onednn_bf16_lstm_probe_says_what_torch_nn_lstm_does():
    from rnnreg.kernels.precision import onednn_bf16_lstm

    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(3, 4)(torch.randn(2, 1, 3))
        works = True
    except RuntimeError:
        works = False
    assert onednn_bf16_lstm() == works


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=IDS)
def test_a_low_precision_model_runs_every_path(cls, kw, dtype):
    torch.manual_seed(0)
    layer = cls(3, 8, **kw).eval()
    x = torch.randn(6, 2, 3)
    want = layer(x)[0]
    layer = layer.to(dtype)
    out, _ = layer(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), want, atol=TOLERANCE[dtype] * 2, rtol=0)


def test_the_upcast_is_logged_once_and_off_autocast_nothing_changes(caplog):
    calls = []

    @outside_cpu_autocast()
    def kernel(a, b):
        calls.append((a.dtype, torch.is_autocast_enabled("cpu")))
        return a @ b, None

    a = torch.randn(2, 2)
    out, none = kernel(a, a)
    assert out.dtype == torch.float32 and none is None and calls[-1] == (torch.float32, False)
    with caplog.at_level(logging.INFO, logger="rnnreg.kernels.precision"), torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = kernel(a.bfloat16(), a)
        kernel(a, a)
    assert out.dtype == torch.bfloat16 and calls[-1] == (torch.float32, False)   # computed in float32
    assert sum("computing in float32" in r.message for r in caplog.records) == 1


def test_under_autocast_the_stepwise_layers_still_run_the_c_kernel(monkeypatch):
    """A layer below hands bf16 on; the C++ kernel must still be the one picked (not the slow
    reference), computing in float32 inside."""
    from rnnreg.kernels import fast

    if not fast.fast_available():
        pytest.skip("the C++ extension could not be built here")
    calls = []
    real = fast.lstm_fast
    monkeypatch.setattr(fast, "lstm_fast", lambda *a, **k: calls.append(a[0].dtype) or real(*a, **k))
    layer = rnnreg.LSTM(3, 8, num_layers=2, zoneout_h_p=0.1).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(torch.randn(6, 2, 3))
    assert len(calls) == 2 and calls[1] == torch.bfloat16 and out.dtype == torch.bfloat16


@pytest.mark.parametrize("cell", ["gru", "rnn", "lstm"])
def test_the_reference_zones_out_under_autocast(cell):
    """Called directly under autocast (as a CUDA layer with implementation="reference" runs it):
    zoneout's lerp met a bf16 activation and a float32 h0 and raised for the Elman RNN; both are
    now taken in float32, the wider."""
    from rnnreg.kernels import reference

    torch.manual_seed(0)
    G, T_, B_, H_ = {"lstm": 4, "gru": 3, "rnn": 1}[cell], 5, 2, 6
    states = [torch.randn(B_, H_) for _ in range(2 if cell == "lstm" else 1)]
    w = [torch.randn(G * H_, 3) * 0.3, torch.randn(G * H_, H_) * 0.3, torch.zeros(G * H_), None]
    keep = torch.full((T_, B_, H_), 0.25)
    masks = [None, None, keep, keep] if cell == "lstm" else [None, keep]
    ref = getattr(reference, f"{cell}_reference")
    x = torch.randn(T_, B_, 3)
    want = ref(x, *states, *w, *masks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ref(x, *states, *w, *masks)
    want, got = (want[0], got[0]) if cell == "lstm" else (want, got)
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=0)


def test_a_float64_layer_is_left_to_float64_under_autocast():
    layer = rnnreg.LSTM(3, 8, zoneout_h_p=0.1).double().eval()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    want = layer(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("implementation", ["fused", "stepwise", "reference"])
def test_a_padded_or_packed_lstm_batch_hands_on_the_dtype_of_every_other_path(implementation, dtype):
    """torch.lstm's packed overload is outside autocast's list: handed through under bf16 it
    returned float32 (output, h_n, c_n) where every other path returns bf16. Now each path, with
    lengths= or a PackedSequence, hands on what the plain batch does, close to float32."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    layer = rnnreg.LSTM(5, 6, implementation=implementation).eval()
    x, lengths = torch.randn(7, 3, 5), torch.tensor([7, 5, 2])
    want, (want_h, _) = layer(x, lengths=lengths)
    with torch.autocast("cpu", dtype=dtype):
        plain = layer(x)[0].dtype
        out, (h_n, c_n) = layer(x, lengths=lengths)
        packed, (h_p, _) = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
    assert out.dtype == h_n.dtype == c_n.dtype == packed.data.dtype == h_p.dtype == plain == dtype
    torch.testing.assert_close(out.float(), want, atol=TOLERANCE[dtype], rtol=0)
    torch.testing.assert_close(pad_packed_sequence(packed)[0].float(), want, atol=TOLERANCE[dtype], rtol=0)
    torch.testing.assert_close(h_n.float(), want_h, atol=TOLERANCE[dtype], rtol=0)
