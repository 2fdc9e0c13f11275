"""The C++ stepwise kernel (kernels/fast.py) against the plain-autograd reference recurrences.

Outputs and every gradient must match ``kernels/reference.py`` for each cell and each combination
of biases, peepholes, recurrent dropout, zoneout (binary, fractional, frozen padded steps) and
update dropout, in float64 (to 1e-8) and float32 (to 1e-5), with a random upstream gradient on
every output.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from rnnreg.kernels.fast import fast_available, gru_fast, lstm_fast, rnn_fast
from rnnreg.kernels.reference import gru_reference, lstm_reference, rnn_reference

from steploop_fixtures import bernoulli, cell_args, randn

if not fast_available():
    pytest.skip("the rnnreg fast kernel could not be built here", allow_module_level=True)

CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu", "rnn_trec"]
KEEPS = [None, "binary", "frac", "frozen"]
# rtol, and atol relative to the largest reference value (measured worst cases: ~1e-15 and ~1e-6)
TOL = {torch.float64: 1e-8, torch.float32: 1e-5}


def make_case(cell, dtype, *, T=5, B=3, I=7, H=11, bias=True, peep=False, rec=False, keep=None,
              upd=False, noncontig=False, seed=0):
    """Returns (fast function, reference function, args, kwargs, names of differentiable args)."""
    gen = torch.Generator().manual_seed(seed)
    rnd, bern = functools.partial(randn, gen, dtype), functools.partial(bernoulli, gen, dtype)
    args = cell_args(gen, dtype, cell.split("_")[0], T=T, B=B, I=I, H=H, bias=bias,
                     noncontig=noncontig)
    assert args["x"].is_contiguous() != noncontig
    kw = {}
    if cell == "lstm" and peep:
        kw["peep"] = rnd(3 * H, scale=0.5)
    if rec:
        kw["rec_mask"] = bern(0.7, B, H) / 0.7
    if keep == "binary":
        kw["keep_h"] = bern(0.4, T, B, H)
    elif keep == "frac":  # zoneout at eval: the rate itself
        kw["keep_h"] = torch.full((T, B, H), 0.3, dtype=dtype)
    elif keep == "frozen":  # variable lengths: state frozen (keep = 1) after each sequence ends
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        pad = (torch.arange(T)[:, None] >= lengths[None, :]).to(dtype)[:, :, None].expand(T, B, H)
        kw["keep_h"] = torch.maximum(bern(0.2, T, B, H), pad).contiguous()
    if cell == "lstm" and "keep_h" in kw:
        kw["keep_c"] = kw["keep_h"].flip(2).contiguous() if keep == "binary" else \
            torch.full((T, B, H), 0.6, dtype=dtype) if keep == "frac" else kw["keep_h"]
    if upd and cell in ("lstm", "gru"):
        kw["upd_mask"] = bern(0.75, T, B, H) / 0.75
    if cell.startswith("rnn_"):
        kw["nonlinearity"] = cell[4:]
        kw["threshold"] = 0.3
        fast, ref = rnn_fast, rnn_reference
    else:
        fast, ref = {"lstm": (lstm_fast, lstm_reference), "gru": (gru_fast, gru_reference)}[cell]
    diff = [k for k, v in args.items() if v is not None] + (["peep"] if "peep" in kw else [])
    return fast, ref, args, kw, diff


def run(fn, args, kw, diff, seed=1, use=None):
    """Forward + backward with a random upstream gradient on each output (or on those in `use`)."""
    args = {k: (v.detach().clone().requires_grad_(k in diff) if v is not None else None)
            for k, v in args.items()}
    kw = {k: (v.detach().clone().requires_grad_(k in diff) if torch.is_tensor(v) else v)
          for k, v in kw.items()}
    out = fn(*args.values(), **kw)
    out = out if isinstance(out, tuple) else (out,)
    gen = torch.Generator().manual_seed(seed)
    ups = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in out]
    loss = sum((o * u).sum() for i, (o, u) in enumerate(zip(out, ups)) if use is None or i in use)
    inputs = [args[k] if k in args else kw[k] for k in diff]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [o.detach() for o in out], dict(zip(diff, grads))


def assert_matches(case, dtype, use=None):
    fast, ref, args, kw, diff = case
    out_f, g_f = run(fast, args, kw, diff, use=use)
    out_r, g_r = run(ref, args, kw, diff, use=use)
    tol = TOL[dtype]
    for a, b in zip(out_f, out_r):
        assert a.dtype == dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))
    for k in diff:
        a, b = g_f[k], g_r[k]
        if b is None:
            assert a is None or not a.any(), k
            continue
        assert a is not None, k
        atol = tol * max(1.0, b.abs().max().item())
        torch.testing.assert_close(a, b, rtol=tol, atol=atol, msg=lambda m: f"grad {k}: {m}")


# cell x bias x rec_mask x zoneout x upd_mask (the Elman cell has no update mask; the LSTM is also
# run with and without peepholes inside the test)
GRID = [(c, b, r, k, u) for c, b, r, k, u in
        itertools.product(CELLS, [True, False], [True, False], KEEPS, [True, False])
        if not (u and c.startswith("rnn_"))]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,bias,rec,keep,upd", GRID,
                         ids=[f"{c}-bias{int(b)}-rec{int(r)}-keep_{k}-upd{int(u)}"
                              for c, b, r, k, u in GRID])
def test_matches_reference(cell, bias, rec, keep, upd, dtype):
    for peep in ([False, True] if cell == "lstm" else [False]):
        case = make_case(cell, dtype, bias=bias, peep=peep, rec=rec, keep=keep, upd=upd)
        assert_matches(case, dtype)


ALL_ON = dict(bias=True, peep=True, rec=True, keep="binary", upd=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [dict(T=1), dict(B=1), dict(T=1, B=1), dict(H=1), dict(I=1),
                                   dict(noncontig=True), dict(T=4, B=9, H=40)],
                         ids=["T1", "B1", "T1B1", "H1", "I1", "noncontig", "wide"])
@pytest.mark.parametrize("cell", CELLS)
def test_shapes(cell, shape, dtype):
    assert_matches(make_case(cell, dtype, **ALL_ON, **shape), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_parallel_pointwise(cell, dtype):
    # B * H above the kernel's grain, so the pointwise passes run on several threads
    assert_matches(make_case(cell, dtype, T=3, B=8, I=5, H=300, **ALL_ON), dtype)


@pytest.mark.parametrize("use", [(0,), (1,)], ids=["h_only", "c_only"])
def test_lstm_one_output_used(use):
    assert_matches(make_case("lstm", torch.float64, **ALL_ON), torch.float64, use=use)


@pytest.mark.parametrize("cell", CELLS)
def test_partial_requires_grad(cell):
    """Only the weights need gradients (x is data): the kernel skips dx / dh0 / dc0."""
    fast, ref, args, kw, diff = make_case(cell, torch.float64, **ALL_ON)
    diff = [k for k in diff if k not in ("x", "h0", "c0")]
    assert_matches((fast, ref, args, kw, diff), torch.float64)


def test_broadcast_masks():
    """Masks that broadcast to their documented shapes are accepted, like the reference."""
    fast, ref, args, kw, diff = make_case("lstm", torch.float64, **ALL_ON)
    T, B, H = kw["keep_h"].shape
    kw["keep_h"] = kw["keep_h"][:, :1]  # (T, 1, H)
    kw["upd_mask"] = kw["upd_mask"][:, :, :1]  # (T, B, 1)
    kw["rec_mask"] = kw["rec_mask"][:1]  # (1, H)
    assert_matches((fast, ref, args, kw, diff), torch.float64)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_no_grad_forward(cell, dtype):
    """Inference (nothing stored for backward) gives exactly the training forward's outputs."""
    fast, ref, args, kw, diff = make_case(cell, dtype, **ALL_ON)
    with torch.no_grad():
        out_ng = fast(*args.values(), **kw)
    out_ng = out_ng if isinstance(out_ng, tuple) else (out_ng,)
    out_tr, _ = run(fast, args, kw, diff)
    out_ref, _ = run(ref, args, kw, diff)
    for a, b, c in zip(out_ng, out_tr, out_ref):
        assert not a.requires_grad
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=TOL[dtype], atol=TOL[dtype])
    # no input requiring grad, grad mode on: also the inference path
    out_plain = fast(*args.values(), **kw)
    out_plain = out_plain if isinstance(out_plain, tuple) else (out_plain,)
    for a, b in zip(out_plain, out_ng):
        assert torch.equal(a, b)


def test_gradcheck_lstm_all_options():
    T, B, I, H = 3, 2, 3, 4
    gen = torch.Generator().manual_seed(5)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).mul_(0.5).requires_grad_()

    inputs = (rnd(T, B, I), rnd(B, H), rnd(B, H), rnd(4 * H, I), rnd(4 * H, H), rnd(4 * H),
              rnd(4 * H), rnd(3 * H))
    rec_mask = (torch.rand(B, H, generator=gen, dtype=torch.float64) < 0.7).double() / 0.7
    keep_h = torch.rand(T, B, H, generator=gen, dtype=torch.float64)  # fractional: both branches
    keep_c = (torch.rand(T, B, H, generator=gen, dtype=torch.float64) < 0.5).double()
    upd_mask = (torch.rand(T, B, H, generator=gen, dtype=torch.float64) < 0.8).double() / 0.8

    def f(*a):
        return lstm_fast(*a[:7], peep=a[7], rec_mask=rec_mask, keep_h=keep_h, keep_c=keep_c,
                         upd_mask=upd_mask)

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("cell", ["gru", "rnn_tanh"])
def test_gradcheck_gru_rnn(cell):
    fast, _, args, kw, diff = make_case(cell, torch.float64, T=3, B=2, I=3, H=4, **ALL_ON)
    keys = list(args)
    inputs = tuple(args[k].clone().requires_grad_() for k in keys)
    assert torch.autograd.gradcheck(lambda *a: fast(*a, **kw), inputs)


def test_bad_inputs():
    fast, _, args, kw, _ = make_case("lstm", torch.float64)
    with pytest.raises(TypeError):
        fast(*[a.half() if a is not None else None for a in args.values()])
    bad = dict(args, h0=args["h0"][:, :-1])
    with pytest.raises(ValueError):
        fast(*bad.values())
    with pytest.raises(ValueError):
        rnn_fast(*make_case("rnn_tanh", torch.float64)[2].values(), nonlinearity="gelu")
