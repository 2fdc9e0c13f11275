"""The step-loop test cases shared by tests/kernels/test_steploop.py (CPU, Triton interpreted) and
tests/kernels/test_steploop_cuda.py (the same on a CUDA device): one cell's arguments with any of
its options, a forward + backward with random upstream gradients, and the comparison against the
plain-autograd reference; and the helper that makes the next import of the Triton pointwise
modules define their kernels afresh (test_steploop.py, test_triton_gpu_build.py)."""

from __future__ import annotations

import functools
import sys

import torch

import rnnreg.kernels
from rnnreg.kernels.reference import gru_reference, lstm_reference, rnn_reference
from rnnreg.kernels.steploop import gru_steploop, lstm_steploop, rnn_steploop

TRITON_MODULES = ("rnnreg.kernels.pointwise_triton", "rnnreg.kernels.pointwise_triton_kernels")


def forget_triton_modules() -> None:
    """Drop the Triton pointwise modules, so the next import defines the kernels afresh (Triton
    reads TRITON_INTERPRET when a kernel is defined, not when it runs)."""
    for name in TRITON_MODULES:
        sys.modules.pop(name, None)
        if hasattr(rnnreg.kernels, name.rsplit(".", 1)[1]):
            delattr(rnnreg.kernels, name.rsplit(".", 1)[1])


T, B, I, H = 4, 3, 5, 6
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
OPTIONS = {"lstm": ("rec", "upd", "keep_h", "keep_c"), "gru": ("rec", "upd", "keep_h"),
           "rnn": ("rec", "keep_h")}
KINDS = ["lstm", "lstm_peep", "gru", "rnn_tanh", "rnn_relu", "rnn_trec"]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}  # rtol, and atol relative to the largest value


def randn(gen, dtype, *shape, scale=1.0):
    """Normal draws from `gen` in float64 (the same values for every dtype), then cast."""
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def bernoulli(gen, dtype, p, *shape):
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) < p).to(dtype)


def cell_args(gen, dtype, cell, *, T, B, I, H, bias=True, noncontig=False):
    """x, h0, (c0), w_ih, w_hh, b_ih, b_hh of one layer of `cell`, drawn from `gen` in this order."""
    rnd = functools.partial(randn, gen, dtype)
    G = GATES[cell] * H
    # noncontig: a time-major view of a batch-major tensor, as a batch_first layer passes it
    x = rnd(B, T, I).transpose(0, 1) if noncontig else rnd(T, B, I)
    args = {"x": x, "h0": rnd(B, H, scale=0.5)}
    if cell == "lstm":
        args["c0"] = rnd(B, H, scale=0.5)
    args.update(w_ih=rnd(G, I, scale=0.4), w_hh=rnd(G, H, scale=0.4),
                b_ih=rnd(G, scale=0.3) if bias else None, b_hh=rnd(G, scale=0.3) if bias else None)
    return args


def make_case(kind, dtype, on=(), broadcast=False, bias=True, seed=0, T=T, B=B, noncontig=False):
    """Returns (step-loop function, reference function, args, kwargs, differentiable names)."""
    gen = torch.Generator().manual_seed(seed)
    rnd, bern = functools.partial(randn, gen, dtype), functools.partial(bernoulli, gen, dtype)
    cell = kind.split("_")[0]
    args = cell_args(gen, dtype, cell, T=T, B=B, I=I, H=H, bias=bias, noncontig=noncontig)
    kw = {}
    if kind == "lstm_peep":
        kw["peep"] = rnd(3 * H, scale=0.5)
    # Broadcast variants: each mask in a shape that only broadcasts to (B, H) / (T, B, H).
    # The reference indexes the (T, B, H) ones by step, so their time axis stays.
    full = {"rec": (B, H), "upd": (T, B, H), "keep_h": (T, B, H), "keep_c": (T, B, H)}
    narrow = {"rec": (1, H), "upd": (T, B, 1), "keep_h": (T, 1, H), "keep_c": (T, B, 1)}
    shape = narrow if broadcast else full
    if "rec" in on:
        kw["rec_mask"] = bern(0.7, *shape["rec"]) / 0.7
    if "upd" in on:
        kw["upd_mask"] = bern(0.75, *shape["upd"]) / 0.75
    if "keep_h" in on:  # fractional weights (zoneout at eval) exercise both sides of the lerp
        kw["keep_h"] = torch.rand(*shape["keep_h"], generator=gen, dtype=torch.float64).to(dtype)
    if "keep_c" in on:
        kw["keep_c"] = bern(0.5, *shape["keep_c"])
    if cell == "rnn":
        kw.update(nonlinearity=kind[4:], threshold=0.3)
    fns = {"lstm": (lstm_steploop, lstm_reference), "gru": (gru_steploop, gru_reference),
           "rnn": (rnn_steploop, rnn_reference)}[cell]
    diff = [k for k, v in args.items() if v is not None] + (["peep"] if "peep" in kw else [])
    return (*fns, args, kw, diff)


def run(fn, args, kw, diff, use=None):
    """Forward + backward with a random upstream gradient on each output (or on those in `use`)."""
    args = {k: v if v is None else v.detach().clone().requires_grad_(k in diff)
            for k, v in args.items()}
    kw = {k: v.detach().clone().requires_grad_(k in diff) if torch.is_tensor(v) else v
          for k, v in kw.items()}
    out = fn(*args.values(), **kw)
    out = out if isinstance(out, tuple) else (out,)
    gen = torch.Generator().manual_seed(1)
    ups = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o) for o in out]  # o's device too
    loss = sum((o * u).sum() for i, (o, u) in enumerate(zip(out, ups)) if use is None or i in use)
    inputs = [args[k] if k in args else kw[k] for k in diff]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [o.detach() for o in out], dict(zip(diff, grads))


def assert_close(a, b, tol, what=""):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()),
                               msg=lambda m: f"{what}: {m}")


def assert_matches(case, dtype, use=None, tol=None):
    fn, ref, args, kw, diff = case
    tol = tol or TOL[dtype]
    (out, grads), (out_r, grads_r) = run(fn, args, kw, diff, use), run(ref, args, kw, diff, use)
    for a, b in zip(out, out_r):
        assert a.dtype == dtype and a.shape == b.shape
        assert_close(a, b, tol, "output")
    for k in diff:
        if grads_r[k] is None:
            assert grads[k] is None or not grads[k].any(), k
        else:
            assert grads[k] is not None and grads[k].dtype == dtype, k
            assert_close(grads[k], grads_r[k], tol, f"grad {k}")


def assert_low_precision(result, reference, out_dtype, grad_dtype, device=None):
    """A half-precision or autocast run (outputs, gradients) against a wider one: the outputs in
    out_dtype within 2e-2, the gradients in grad_dtype within 5e-2 (on `device`, if given)."""
    (out, grads), (out_r, grads_r) = result, reference
    for a, b in zip(out, out_r):
        assert a.dtype == out_dtype and (device is None or a.device.type == device)
        assert_close(a.to(b.dtype), b, 2e-2, "output")
    for k, g in grads_r.items():
        assert grads[k].dtype == grad_dtype
        assert_close(grads[k].to(g.dtype), g, 5e-2, f"grad {k}")
