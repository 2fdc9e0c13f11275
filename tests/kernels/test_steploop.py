"""The step loop (kernels/steploop.py) against the plain-autograd reference recurrences.

Outputs and every gradient (x, h0, c0, weights, biases, peepholes) must match
``kernels/reference.py`` for each cell (LSTM with and without peepholes, GRU, Elman tanh / ReLU /
TRec) and every combination of recurrent dropout, update dropout and zoneout of h and c, also
with masks that only broadcast to their documented shapes and without biases; in float64 (to
1e-10) and float32 (to 1e-5), with a random upstream gradient on every output.

Two pointwise implementations: the torch-op twin runs every case above. The Triton kernels run
under Triton's interpreter (TRITON_INTERPRET=1 on CPU tensors; skipped where Triton is not
installed), which costs milliseconds per launch: each pass is checked against its torch twin over
the combinations of its optional operands, and each cell end to end against the reference with no
option and with all of them. Half precision (bf16, fp16) runs with both. The cases are
steploop_fixtures.py's, shared with the same checks on a CUDA device (test_steploop_cuda.py).
"""

from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys

import pytest
import torch

from rnnreg.kernels import steploop_graphs
from rnnreg.kernels.steploop import (gru_steploop, lstm_steploop, pointwise_backend, pointwise_for,
                                     rnn_steploop, triton_available)
from steploop_fixtures import (B, GATES, H, KINDS, OPTIONS, TRITON_MODULES, assert_close,
                               assert_low_precision, assert_matches, forget_triton_modules,
                               make_case, run)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny step loops: one thread is fastest

@pytest.fixture(scope="module")
def interpreted_triton():
    pytest.importorskip("triton", reason="Triton is not installed")
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    forget_triton_modules()
    try:
        yield importlib.import_module(TRITON_MODULES[0])
    finally:
        if saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = saved
        forget_triton_modules()


@pytest.fixture(params=["torch", "triton"])
def backend(request):
    """The pointwise implementation every step-loop call in the test uses."""
    if request.param == "triton":
        request.getfixturevalue("interpreted_triton")
    with pointwise_backend(request.param):
        yield request.param


GRID = [(kind, on) for kind in KINDS for n in range(len(OPTIONS[kind.split("_")[0]]) + 1)
        for on in itertools.combinations(OPTIONS[kind.split("_")[0]], n)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind,on", GRID, ids=[f"{k}-{'-'.join(on) or 'none'}" for k, on in GRID])
def test_matches_reference(kind, on, dtype):
    with pointwise_backend("torch"):
        assert_matches(make_case(kind, dtype, on), dtype)


# The Triton kernels end to end: each cell with no option and with all (every combination of
# options is checked pass by pass in test_triton_pass_matches_torch_pass, one launch each).
TRITON_GRID = [(k, on, dt) for k in KINDS for on, dt in
               [((), torch.float64), (OPTIONS[k.split("_")[0]], torch.float64),
                (OPTIONS[k.split("_")[0]], torch.float32)]]


@pytest.mark.parametrize("kind,on,dtype", TRITON_GRID,
                         ids=[f"{k}-{'all' if on else 'none'}-{str(d)[6:]}"
                              for k, on, d in TRITON_GRID])
def test_triton_matches_reference(interpreted_triton, kind, on, dtype):
    with pointwise_backend("triton"):
        assert pointwise_for(torch.zeros(1)) is interpreted_triton
        assert_matches(make_case(kind, dtype, on), dtype)


PASS_OPTIONS = {"lstm_fwd": ("peep", "u", "kh", "kc", "rec", "cn", "train"),
                "lstm_bwd": ("peep", "u", "kh", "kc", "rec", "dhu", "dcu"),
                "gru_fwd": ("u", "kh", "rec", "train"), "gru_bwd": ("u", "kh", "rec", "dhu"),
                "rnn_fwd": ("kh", "rec", "train", "relu", "trec"), "rnn_bwd": ("kh", "rec", "dhu")}


def pass_args(name, dtype, on, gen):
    """Arguments of one pointwise pass: random tensors (storage dtype, or the compute dtype for
    masks and carried gradients), the optional ones only when named in ``on``."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32

    def rnd(*shape, mask=False):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(acc if mask else dtype)

    def opt(key, *shape, mask=True):
        return rnd(*shape, mask=mask) if key in on else None

    bh = (B, H)
    rm, hin = opt("rec", *bh), opt("rec", *bh, mask=False)
    train = "train" in on
    if name == "lstm_fwd":
        return [rnd(B, 4 * H), rnd(*bh), rnd(*bh), opt("peep", 3 * H, mask=False), opt("u", *bh),
                opt("kh", *bh), opt("kc", *bh), rm, rnd(*bh), rnd(*bh), opt("cn", *bh, mask=False),
                hin, train]
    if name == "lstm_bwd":
        return [rnd(B, 4 * H), rnd(*bh), rnd(*bh), opt("peep", 3 * H, mask=False), opt("u", *bh),
                opt("kh", *bh), opt("kc", *bh), opt("dhu", *bh, mask=False),
                opt("dcu", *bh, mask=False), rnd(*bh), rm, rnd(*bh, mask=True),
                rnd(*bh, mask=True), rnd(B, 4 * H)]
    if name == "gru_fwd":
        return [rnd(B, 3 * H), rnd(B, 3 * H), rnd(*bh), opt("u", *bh), opt("kh", *bh), rm,
                rnd(*bh), rnd(*bh) if train else None, hin, train]
    if name == "gru_bwd":
        return [rnd(B, 3 * H), rnd(*bh), rnd(*bh), opt("u", *bh), opt("kh", *bh),
                opt("dhu", *bh, mask=False), rnd(*bh), rm, rnd(*bh, mask=True), rnd(B, 3 * H),
                rnd(B, 3 * H)]
    if name == "rnn_fwd":
        act = "relu" if "relu" in on else "trec" if "trec" in on else "tanh"
        return [rnd(*bh), rnd(*bh), opt("kh", *bh), rm, rnd(*bh), hin, train, act, 0.3]
    return [rnd(*bh), opt("kh", *bh), opt("dhu", *bh, mask=False), rnd(*bh), rm,
            rnd(*bh, mask=True), rnd(*bh)]


def flag_combinations(options):
    """None, each alone, all but each, all: every compile-time branch on and off, alone and among
    all the others (the full power set, 2^7 launches for an LSTM pass, is slow interpreted)."""
    every = tuple(options)
    return [(), every, *[(o,) for o in every], *[tuple(p for p in every if p != o) for o in every]]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16],
                         ids=["f64", "f32", "bf16"])
@pytest.mark.parametrize("name", list(PASS_OPTIONS))
def test_triton_pass_matches_torch_pass(interpreted_triton, name, dtype):
    """Each Triton pass against its torch twin on one step, over the combinations of its optional
    operands (and the RNN's activations): every tensor it may write must come out the same."""
    from rnnreg.kernels import steploop_torch

    gen = torch.Generator().manual_seed(0)
    options = [o for o in PASS_OPTIONS[name] if o not in ("relu", "trec")]
    acts = [(), ("relu",), ("trec",)] if name == "rnn_fwd" else [()]
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
    for on in (c + a for c in flag_combinations(options) for a in acts):
        args = pass_args(name, dtype, on, gen)
        twin = [a.clone() if torch.is_tensor(a) else a for a in args]
        getattr(interpreted_triton, name)(*args)
        getattr(steploop_torch, name)(*twin)
        for i, (a, b) in enumerate(zip(args, twin)):
            if torch.is_tensor(a):
                assert_close(a.double(), b.double(), tol, f"{name} {on} argument {i}")


@pytest.mark.parametrize("kind", KINDS)
def test_broadcast_masks_and_no_biases(kind):
    on = OPTIONS[kind.split("_")[0]]
    with pointwise_backend("torch"):
        assert_matches(make_case(kind, torch.float64, on, broadcast=True), torch.float64)
        assert_matches(make_case(kind, torch.float64, on, bias=False), torch.float64)


@pytest.mark.parametrize("shape", [{"T": 1}, {"B": 1}, {"noncontig": True}],
                         ids=["one_step", "one_sequence", "noncontig"])
@pytest.mark.parametrize("kind", ["lstm_peep", "gru", "rnn_tanh"])
def test_shapes(kind, shape):
    with pointwise_backend("torch"):
        assert_matches(make_case(kind, torch.float64, OPTIONS[kind.split("_")[0]], **shape),
                       torch.float64)


@pytest.mark.parametrize("use", [(0,), (1,)], ids=["h_only", "c_only"])
def test_lstm_one_output_used(use):
    with pointwise_backend("torch"):
        assert_matches(make_case("lstm_peep", torch.float64, OPTIONS["lstm"]), torch.float64,
                       use=use)


@pytest.mark.parametrize("kind", ["lstm_peep", "gru", "rnn_tanh"])
def test_partial_requires_grad(kind):
    """Only the weights need gradients (x and the states are data): the others come back None."""
    fn, ref, args, kw, diff = make_case(kind, torch.float64, OPTIONS[kind.split("_")[0]])
    diff = [k for k in diff if k not in ("x", "h0", "c0")]
    with pointwise_backend("torch"):
        assert_matches((fn, ref, args, kw, diff), torch.float64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("kind", ["lstm_peep", "gru", "rnn_tanh"])
def test_half_precision_returns_the_input_dtype(backend, kind, dtype):
    """Half storage, float32 pointwise math: close to the float64 reference on the same values."""
    fn, ref, args, kw, diff = make_case(kind, dtype, OPTIONS[kind.split("_")[0]])
    up = {k: v if not torch.is_tensor(v) else v.double() for k, v in kw.items()}
    args64 = {k: None if v is None else v.double() for k, v in args.items()}
    assert_low_precision(run(fn, args, kw, diff), run(ref, args64, up, diff), dtype, dtype)


def test_autocast_computes_in_autocasts_dtype():
    """float32 inputs under CPU autocast run in bfloat16, as torch.nn's RNNs do under autocast."""
    fn, ref, args, kw, diff = make_case("lstm_peep", torch.float32, OPTIONS["lstm"])
    with pointwise_backend("torch"), torch.autocast("cpu", dtype=torch.bfloat16):
        result = run(fn, args, kw, diff)
    # gradients in float32: through the differentiable casts to bfloat16
    assert_low_precision(result, run(ref, args, kw, diff), torch.bfloat16, torch.float32)


@pytest.mark.parametrize("kind", ["lstm_peep", "gru", "rnn_trec"])
def test_inference_matches_training(kind):
    """Without grad nothing is stored for a backward; the outputs are exactly the training ones."""
    fn, _, args, kw, diff = make_case(kind, torch.float32, OPTIONS[kind.split("_")[0]])
    with pointwise_backend("torch"):
        with torch.no_grad():
            out = fn(*args.values(), **kw)
        trained, _ = run(fn, args, kw, diff)
    for a, b in zip(out if isinstance(out, tuple) else (out,), trained):
        assert not a.requires_grad and torch.equal(a, b)


@pytest.mark.parametrize("kind", ["lstm_peep", "gru", "rnn_relu"])
def test_second_backward_raises(kind):
    """The hand-written backward is not differentiable again: a gradient penalty is refused, never
    silently wrong (as the C++ kernel's, tests/layers/test_second_order.py)."""
    fn, _, args, kw, _ = make_case(kind, torch.float64, OPTIONS[kind.split("_")[0]])
    x = args["x"].clone().requires_grad_()
    with pointwise_backend("torch"):
        out = fn(x, *list(args.values())[1:], **kw)
    h = out[0] if isinstance(out, tuple) else out
    g, = torch.autograd.grad(h.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.pow(2).sum().backward()


def test_gradcheck_lstm_all_options():
    fn, _, args, kw, diff = make_case("lstm_peep", torch.float64, OPTIONS["lstm"])
    inputs = (*[args[k].clone().requires_grad_() for k in args], kw.pop("peep").requires_grad_())
    with pointwise_backend("torch"):
        assert torch.autograd.gradcheck(lambda *a: fn(*a[:-1], peep=a[-1], **kw), inputs,
                                        fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_a_held_unit_stays_frozen_bit_for_bit(backend, dtype):
    """Zoneout weight exactly 1 (a padded step, a sleeping Clockwork module) must return the old
    state exactly: `new + w * (old - new)` drifts by rounding; torch.lerp's two-sided form does not."""
    torch.manual_seed(0)
    T_, B_, H_ = 4, 3, 8
    x = torch.randn(T_, B_, 5, dtype=dtype)
    h0, c0 = torch.randn(B_, H_, dtype=dtype), torch.randn(B_, H_, dtype=dtype)
    keep = torch.ones(T_, B_, H_, dtype=dtype)
    for cell, fn in (("lstm", lstm_steploop), ("gru", gru_steploop), ("rnn", rnn_steploop)):
        G = GATES[cell] * H_
        w = (torch.randn(G, 5, dtype=dtype), torch.randn(G, H_, dtype=dtype), None, None)
        if cell == "lstm":
            hs, cs = fn(x, h0, c0, *w, keep_h=keep, keep_c=keep)
            assert torch.equal(cs, c0.expand_as(cs))
        else:
            hs = fn(x, h0, *w, keep_h=keep)
        assert torch.equal(hs, h0.expand_as(hs)), cell


def test_cpu_picks_torch_pointwise_and_never_cuda_graphs(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.zeros(1)
    assert not triton_available(x)
    assert pointwise_for(x).__name__ == "rnnreg.kernels.steploop_torch"
    fn, ref, args, kw, diff = make_case("lstm_peep", torch.float64, OPTIONS["lstm"])
    steploop_graphs.use_cuda_graphs(True)
    try:
        assert not steploop_graphs.graphs_used_for(x)
        assert_matches((fn, ref, args, kw, diff), torch.float64)
        assert steploop_graphs.cached_graphs() == 0
    finally:
        steploop_graphs.use_cuda_graphs(False)


def test_bad_inputs():
    fn, _, args, kw, _ = make_case("rnn_tanh", torch.float64)
    with pytest.raises(ValueError, match="nonlinearity"):
        fn(*args.values(), nonlinearity="gelu")
    with pytest.raises(ValueError, match="initial states"):
        fn(*dict(args, h0=args["h0"][:, :-1]).values())
    with pytest.raises(ValueError, match="pointwise backend"):
        with pointwise_backend("cuda"):
            pass


@pytest.mark.slow  # a fresh interpreter
def test_rnnreg_imports_its_triton_kernels_only_when_it_uses_them():
    """On the CPU (no interpreter asked for) neither importing rnnreg nor running a step loop
    imports the Triton pointwise modules. (Triton itself may be imported by torch's dynamo.)"""
    code = ("import sys, torch, rnnreg; from rnnreg.kernels.steploop import gru_steploop\n"
            "x = torch.randn(3, 2, 4, requires_grad=True)\n"
            "gru_steploop(x, torch.zeros(2, 5), torch.randn(15, 4), torch.randn(15, 5), None, None)"
            ".sum().backward()\n"
            f"assert not {set(TRITON_MODULES)!r} & set(sys.modules), 'imported'")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
