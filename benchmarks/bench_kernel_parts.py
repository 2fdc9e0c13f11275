"""The parts of the stepwise kernel's time that the layer benchmark cannot separate, each timed on
its own: the matrix products through MKL and through oneDNN (its inner product and its brgemm
micro-kernel), the transposes, the registered ops' Python dispatch, torch.nn.LSTM against
rnnreg.LSTM in two allocator states, and the regularizers' own passes.

Usage:
    python benchmarks/bench_kernel_parts.py > parts.jsonl      # the layer sizes, a few minutes
    python benchmarks/bench_kernel_parts.py --quick            # tiny shapes, seconds

stdout carries one JSON line per measurement ({"part", "case", "what", "us"} plus the part's own
keys); a readable line per measurement goes to stderr. Each time is the fastest of 7 blocks after a
warm-up (a slow block measures the neighbours on a shared machine).

- "products": out (m, n) = a (m, k) @ b (k, n) through torch.mm (MKL here), torch's oneDNN inner
  product on plain rows, and on a weight reordered once (what csrc/onednn.h's OneDnnB does), torch.mm
  on bf16 operands (oneDNN; what csrc/onednn.h's gemm_bf16 calls), and, where this torch has it,
  oneDNN's brgemm micro-kernel as csrc/brgemm.h calls it, on float rows and (where oneDNN
  generates its bf16 kernel) on bf16 operands with the weight in VNNI layout (float32 out); then
  the weight's preparation: the reorder, and the VNNI layout built from W_hh (the forward's).
  Shapes: a step's product and the all-step ones of the layer benchmark.
- "transpose": csrc/transpose.h's vector kernel, its scalar twin, and w.t().contiguous().
- "dispatch": one T = B = 1, H = 4 LSTM forward + backward through the registered op
  (torch.ops.rnnreg.lstm_forward) and through the eager route (kernels/fast_eager.py).
- "allocator": a training iteration of the benchmark's small stack (bench_layers.py) for
  torch.nn.LSTM and rnnreg's stepwise LSTM, with the minor page faults per iteration, in a fresh
  process and again after a 16 MiB buffer has been freed (glibc then keeps such buffers on its heap).
- "regularizers": forward + backward of weight drop on a W_hh of each size, as a stored mask
  multiplied in (the autograd form) and as regularizers.masks.apply_dropout (one pass each way,
  no mask kept), and of AR + TAR on an output sequence, as ``h.pow(2).mean()`` expressions and as
  penalties.ar / tar with their closed-form backward passes (kernels/squared_sums.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

import bench_layers as bl  # the script's folder is on sys.path when it runs
from rnnreg.kernels import fast, fast_eager
from rnnreg.kernels.build import native_ops
from rnnreg.penalties import ar, tar
from rnnreg.regularizers.masks import apply_dropout, dropout_mask


def fastest_us(run, n: int) -> float:
    for _ in range(2):
        run()
    return min(bl.seconds(run, n) for _ in range(7)) * 1e6


def emit(out, part: str, case: str, what: str, us: float, **extra) -> None:
    out.write(json.dumps({"part": part, "case": case, "what": what, "us": round(us, 2), **extra}) + "\n")
    bl.log(f"{part:10s} {case:28s} {what:22s} {us:12.1f} us")


def products(out, quick: bool) -> None:
    linear, reorder = torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight
    shapes = ([("step", 4, 8, 32), ("all-step", 24, 8, 32)] if quick else
              [("step small", 20, 200, 800), ("step medium", 20, 650, 2600), ("step awd", 80, 1150, 4600),
               ("all-step small", 700, 200, 800), ("all-step medium", 700, 650, 2600)])
    for case, m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        w = b.t().contiguous()  # oneDNN's weight: b^T as (n, k) rows
        reps = 2 if quick else max(2, int(2e8 / (m * k * n)))
        times = {"torch.mm": fastest_us(lambda: torch.mm(a, b), reps),
                 "onednn": fastest_us(lambda: linear(a, w, None, "none", [None], ""), reps)}
        wr = reorder(w, m)
        times["onednn reordered"] = fastest_us(lambda: linear(a, wr, None, "none", [None], ""), reps)
        ab, bb = a.bfloat16(), b.bfloat16()
        times["torch.mm bf16"] = fastest_us(lambda: torch.mm(ab, bb), reps)
        ops, c = native_ops(), torch.empty(m, n)
        routes = ops.gemm_routes()
        if "brgemm" in routes:  # oneDNN's micro-kernel, as csrc/brgemm.h calls it
            times["brgemm"] = fastest_us(lambda: ops.brgemm(a, b, c, False), reps)
        if "brgemm_bf16" in routes:  # its bf16 kernel, with the weight in VNNI layout
            packed = ops.vnni(b)
            times["brgemm bf16"] = fastest_us(lambda: ops.brgemm(ab, packed, c, False), reps)
        for what, us in times.items():
            gflops = round(2 * m * k * n / us / 1e3, 1)
            emit(out, "products", case, what, us, shape=[m, k, n], gflops=gflops)
        # Preparing the weight, once per call of a layer: oneDNN's reorder, and the VNNI layout
        # the forward builds from W_hh (b^T's rows).
        emit(out, "products", case, "reorder", fastest_us(lambda: reorder(w, m), reps), shape=[m, k, n])
        if "brgemm_bf16" in routes:
            vnni_us = fastest_us(lambda: ops.vnni(w, True), reps)
            emit(out, "products", case, "vnni pack", vnni_us, shape=[m, k, n])


def transposes(out, quick: bool) -> None:
    transpose = native_ops().transpose
    for m, n in ([(40, 70)] if quick else [(700, 800), (700, 2600), (5600, 4600)]):
        w = torch.randn(m, n)
        reps = 2 if quick or m > 1000 else 30
        for what, run in (("vector", lambda: transpose(w, True)), ("scalar", lambda: transpose(w, False)),
                          ("t().contiguous()", lambda: w.t().contiguous())):
            emit(out, "transpose", f"{m} x {n}", what, fastest_us(run, reps))


def dispatch(out, quick: bool) -> None:
    T, B, H = 1, 1, 4
    x = torch.randn(T, B, H, requires_grad=True)
    h0, c0 = torch.zeros(B, H), torch.zeros(B, H)
    w_ih, w_hh = torch.randn(4 * H, H, requires_grad=True), torch.randn(4 * H, H, requires_grad=True)
    args = (x, h0, c0, w_ih, w_hh, None, None, None, None, None, None, None, True, False)
    for what, route in (("registered op", torch.ops.rnnreg.lstm_forward), ("eager route", fast_eager.lstm_forward)):
        def run(route=route):
            route(*args)[0].sum().backward()
        emit(out, "dispatch", "T = B = 1, H = 4", what, fastest_us(run, 20 if quick else 500))


def allocator(out, quick: bool) -> None:
    size = (bl.QUICK_SIZES if quick else bl.SIZES)["small"]
    cfg = next(c for c in bl.CONFIGS if c.name == "stepwise")
    x = torch.randn(size.steps, size.batch, size.modules[0][0], requires_grad=True)
    weight = torch.randn(size.steps, size.batch, size.modules[-1][1])
    steps = {"torch.nn.LSTM": bl.make_step(bl.build(size, cfg, True), x, weight, None),
             "rnnreg stepwise": bl.make_step(bl.build(size, cfg, False), x, weight, None)}
    iters = 2 if quick else 30
    for state in ("fresh process", "after a large free"):
        if state == "after a large free":
            # 16 MiB, touched, then freed: glibc's mmap threshold rises to it (up to its 32 MiB cap)
            torch.empty(16 << 20, dtype=torch.uint8).fill_(0)
        for what, step in steps.items():
            step()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            us = bl.seconds(step, iters) * 1e6
            faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / iters
            emit(out, "allocator", state, what, us, faults_per_iter=round(faults, 1))


def regularizers(out, quick: bool) -> None:
    """Forward + backward of weight drop on a W_hh and of AR + TAR on an output sequence, each in
    the autograd form (a stored mask; h.pow(2).mean()) and the form the library runs
    (regularizers.masks.apply_dropout; kernels/squared_sums.py)."""
    weights = [("W_hh tiny", 32, 8)] if quick else [("W_hh small", 800, 200), ("W_hh medium", 2600, 650),
                                                      ("W_hh awd", 4600, 1150)]
    for case, rows, cols in weights:
        w, up = torch.randn(rows, cols, requires_grad=True), torch.randn(rows, cols)
        forms = {"mask and multiply": lambda: w * dropout_mask(w.shape, 0.5, w),
                 "apply_dropout": lambda: apply_dropout(w, 0.5)}
        for what, form in forms.items():
            def run(form=form):
                form().backward(up)
                w.grad = None
            emit(out, "regularizers", f"weight drop, {case}", what, fastest_us(run, 2 if quick else 20))
    seqs = [("h tiny", 6, 4, 8)] if quick else [("h small", 35, 20, 200), ("h medium", 35, 20, 650),
                                                 ("h awd", 70, 80, 400)]
    for case, T, B, H in seqs:
        h = torch.randn(T, B, H, requires_grad=True)
        forms = {"autograd": lambda: 2.0 * h.pow(2).mean() + (h[1:] - h[:-1]).pow(2).mean(),
                 "closed forms": lambda: ar(h, 2.0) + tar(h, 1.0)}
        for what, form in forms.items():
            def run(form=form):
                form().backward()
                h.grad = None
            emit(out, "regularizers", f"AR + TAR, {case}", what, fastest_us(run, 2 if quick else 50))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run")
    args = p.parse_args(argv)
    out = bl.json_stdout()
    torch.set_num_threads(args.threads)
    if not fast.fast_available():
        bl.log("the C++ kernel could not be built: nothing to measure")
        return 1
    # The allocator part first: it needs a process in which nothing large has been freed yet.
    for part in (allocator, products, transposes, dispatch, regularizers):
        part(out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
