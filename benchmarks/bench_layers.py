"""Forward + backward throughput of rnnreg's recurrent stacks, as a ratio to torch.nn's.

Each (size, configuration) pair is measured against a plain torch.nn.LSTM (or torch.nn.GRU, or
torch.nn.RNN) stack of the same sizes in the same run: both are warmed up, then every repeat times
the baseline and the candidate back to back (alternating which goes first), and the reported ratio
is the median of the per-repeat ratios. stdout carries one JSON line per pair and nothing else;
progress goes to stderr.

    python benchmarks/bench_layers.py                       # everything (minutes on 2 cores)
    python benchmarks/bench_layers.py --quick               # smoke run with tiny sizes (seconds)
    python benchmarks/bench_layers.py --sizes small --configs fused,zoneout --threads 1

The *_bf16 configurations run both contenders' forward under torch.autocast("cpu", bfloat16) (the
backward follows the forward's dtypes); rnnreg's stepwise LSTM, GRU and Elman kernels compute in
float32 inside, with bf16 matrix products on a CPU with native bf16 (kernels/precision.py). The
LSTM ones are skipped, with a note, where torch.nn.LSTM itself fails under CPU bf16 autocast
(oneDNN has no bf16 LSTM on some CPUs, AVX2-only ones): there is no baseline to compare with.
Every line carries the machine's float32 matmul peak (``peak_gflops``, the faster of torch.mm and
torch's oneDNN inner product, named in ``peak_by``; measured at start and also logged as a header
line on stderr); ``peak_fraction`` is the matmul FLOP rate over that float32 peak for every row,
bf16 ones included.

The configurations regularized by weight drop, locked dropout, AR/TAR or weight noise alone (on
the fused path, and AWD-LSTM's set on the stepwise one) are also timed against a plain-PyTorch twin
doing the same regularization (torch_regularized.py), in the same repeats: ``ratio_same_work``.
``ratio_min`` / ``ratio_max`` give the spread of the repeats.

By default glibc's malloc is made steady first (``--malloc steady``: ``steady_malloc``), so that
neither contender's time depends on which of them last made glibc return memory to the kernel;
every line carries each contender's minor page faults per iteration.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch

import rnnreg
from rnnreg.kernels import pick_kernel
from rnnreg.kernels.precision import onednn_bf16_lstm
from rnnreg.penalties import ar, norm_stabilizer, tar
from torch_regularized import TorchRegularizedLSTM, twin_step

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
AWD_DROPOUTS = {"input_p": 0.4, "hidden_p": 0.25, "output_p": 0.4}  # AWD-LSTM's dropouti/h/dropout


@dataclass(frozen=True)
class Size:
    batch: int
    steps: int
    modules: tuple[tuple[int, int, int], ...]  # (input_size, hidden_size, num_layers) per module
    repeats: int


# AWD-LSTM's stack is three single-layer modules; both contenders are built the same way.
SIZES = {
    "small": Size(20, 35, ((200, 200, 2),), repeats=9),
    "medium": Size(20, 35, ((650, 650, 2),), repeats=9),
    "awd": Size(80, 70, ((400, 1150, 1), (1150, 1150, 1), (1150, 400, 1)), repeats=5),
}
QUICK_SIZES = {  # same structure, tiny dimensions: exercises every code path in seconds
    "small": Size(4, 6, ((16, 16, 2),), repeats=1),
    "medium": Size(4, 6, ((24, 24, 2),), repeats=1),
    "awd": Size(4, 6, ((16, 32, 1), (32, 32, 1), (32, 16, 1)), repeats=1),
}


@dataclass(frozen=True)
class Config:
    name: str
    cell: str = "lstm"
    layer: dict = field(default_factory=dict)  # rnnreg constructor keywords
    dropouts: dict = field(default_factory=dict)  # input_p / hidden_p / output_p of the whole stack
    penalty: str | None = None  # "ar_tar" or "norm_cells"
    sizes: tuple[str, ...] = tuple(SIZES)
    autocast: torch.dtype | None = None  # forward under CPU autocast to this dtype, both contenders


FUSED, STEPWISE = {"implementation": "fused"}, {"implementation": "stepwise"}
CONFIGS = [
    Config("fused", layer=FUSED),
    Config("weight_drop", layer={**FUSED, "weight_p": 0.5}),
    Config("locked_dropout", layer=FUSED, dropouts=AWD_DROPOUTS),
    Config("ar_tar", layer=FUSED, penalty="ar_tar"),
    Config("awd_all", layer={**FUSED, "weight_p": 0.5}, dropouts=AWD_DROPOUTS, penalty="ar_tar"),
    # The same set on the stepwise kernel, a user's choice where it outruns the fused ATen call
    Config("awd_all_stepwise", layer={**STEPWISE, "weight_p": 0.5}, dropouts=AWD_DROPOUTS, penalty="ar_tar"),
    Config("stepwise", layer=STEPWISE),
    Config("zoneout", layer={**STEPWISE, "zoneout_h_p": 0.05, "zoneout_c_p": 0.5}),  # Krueger et al.'s LSTM rates
    Config("recurrent_dropout", layer={**STEPWISE, "recurrent_dropout": 0.25}),
    Config("semeniuta", layer={**STEPWISE, "recurrent_dropout": 0.25, "recurrent_dropout_mode": "semeniuta"}),
    Config("peepholes", layer={**STEPWISE, "peepholes": True}),
    Config("norm_stabilizer_cells", layer=STEPWISE, penalty="norm_cells"),
    Config("weight_noise", layer={**FUSED, "weight_noise_std": 0.075}),
    Config("reference", layer={"implementation": "reference"}, sizes=("small",)),
    Config("gru_fused", cell="gru", layer=FUSED),
    Config("gru_stepwise", cell="gru", layer=STEPWISE),
    Config("fused_bf16", layer=FUSED, autocast=torch.bfloat16),
    Config("stepwise_bf16", layer=STEPWISE, autocast=torch.bfloat16),
    Config("gru_stepwise_bf16", cell="gru", layer=STEPWISE, autocast=torch.bfloat16),
    Config("rnn_fused", cell="rnn", layer=FUSED),
    Config("rnn_stepwise", cell="rnn", layer=STEPWISE),
    Config("rnn_stepwise_bf16", cell="rnn", layer=STEPWISE, autocast=torch.bfloat16),
]
# The layer keywords the plain-PyTorch twin reproduces; a per-step one (zoneout, ...) has no twin.
TWINNABLE = {"implementation", "weight_p", "weight_noise_std"}
BASELINES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
CANDIDATES = {"lstm": rnnreg.LSTM, "gru": rnnreg.GRU, "rnn": rnnreg.RNN}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def module_dropouts(dropouts: dict, index: int, count: int) -> dict:
    """Spread the stack's locked dropouts over its modules: input_p on the first module's input,
    hidden_p between layers and modules, output_p on the last module's output."""
    if not dropouts:
        return {}
    out = {"hidden_p": dropouts["hidden_p"]}
    out["input_p"] = dropouts["input_p"] if index == 0 else 0.0
    out["output_p"] = dropouts["output_p"] if index == count - 1 else dropouts["hidden_p"]
    return out


def build(size: Size, cfg: Config, baseline: bool) -> list[torch.nn.Module]:
    count = len(size.modules)
    if baseline:
        return [BASELINES[cfg.cell](i, h, n).train() for i, h, n in size.modules]
    return [CANDIDATES[cfg.cell](i, h, n, **cfg.layer, **module_dropouts(cfg.dropouts, k, count)).train()
            for k, (i, h, n) in enumerate(size.modules)]


def build_twin(size: Size, cfg: Config) -> list[torch.nn.Module] | None:
    """The plain-PyTorch twin doing the configuration's regularization (torch_regularized.py), for
    the LSTM configurations with only a regularizer it has (on either path); None for the others."""
    weight_p, noise = cfg.layer.get("weight_p", 0.0), cfg.layer.get("weight_noise_std", 0.0)
    twinnable = set(cfg.layer) <= TWINNABLE and cfg.penalty in (None, "ar_tar")
    if (cfg.cell != "lstm" or not twinnable or cfg.autocast
            or not (weight_p or noise or cfg.dropouts or cfg.penalty)):
        return None
    count = len(size.modules)
    return [TorchRegularizedLSTM(i, h, n, weight_p, noise, **module_dropouts(cfg.dropouts, k, count)).train()
            for k, (i, h, n) in enumerate(size.modules)]


def penalty_of(states: rnnreg.RecurrentStates | None, kind: str | None) -> torch.Tensor | float:
    """The penalty terms on the last module's sequences (AR on the dropped output, TAR on the raw
    one, Merity et al. 2017; norm-stabilizer on the cells, Krueger & Memisevic 2016)."""
    if kind == "ar_tar":
        return ar(states.dropped[-1], 2.0) + tar(states.raw[-1], 1.0)
    if kind == "norm_cells":
        return norm_stabilizer(states.cells[-1], 50.0)
    return 0.0


def make_step(modules: list[torch.nn.Module], x: torch.Tensor, weight: torch.Tensor, penalty: str | None,
              autocast: torch.dtype | None = None):
    """One training iteration: forward through the stack, loss = sum(out * weight) + penalty, backward.
    With ``autocast`` the forward and the loss run under CPU autocast to that dtype, the backward
    outside it (as torch's autocast recipe has it)."""
    kwargs = {"return_states": penalty == "ar_tar", "return_cells": penalty == "norm_cells"} if penalty else {}

    def step() -> None:
        x.grad = None
        for m in modules:
            m.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            out, states = x, None
            for m in modules:
                result = m(out, **kwargs)
                out, states = result[0], (result[2] if kwargs else None)
            loss = (out * weight).sum() + penalty_of(states, penalty)
        loss.backward()
    return step


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -2, -3, -4
# -1 turns trimming off (mallopt(3)); a finite threshold, even 1 GiB, was crossed at the AWD size.
STEADY = ((M_MMAP_MAX, 0), (M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, -1), (M_TOP_PAD, 64 << 20))


def steady_malloc() -> str:
    """Keep freed tensors' memory in the process, as PyTorch's CUDA caching allocator does.

    glibc serves blocks above its mmap threshold with fresh mmaps and gives the heap's free top
    back to the kernel beyond its trim threshold; both thresholds move with the history of frees,
    so the same step can take each of its large buffers' pages as new zero-filled ones (one minor
    fault per 4 KiB page) or reuse them, which moved the paired ratio of two identical ATen calls
    by tenths (benchmarks/README.md, "Allocator", with the runs). Here: no mmap at all (so no
    size cap), a high threshold in case it is re-enabled, never trim.
    Returns the setting in force: "steady"; "default" where there is no glibc mallopt (macOS,
    musl, Windows) or it refused the first setting; "partial: ..." naming the settings refused
    after others took effect."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return "default"
    refused = [f"mallopt({option}, {value})" for option, value in STEADY if mallopt(option, value) != 1]
    if not refused:
        return "steady"
    return "default" if len(refused) == len(STEADY) else "partial: refused " + ", ".join(refused)


def minor_faults() -> int:
    """Minor page faults of this process so far (new pages mapped in, typically zero-filled)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def seconds(step, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - start) / iters


def stack_flops(size: Size, cell: str) -> float:
    """Matmul FLOPs of one forward + backward: forward 2*T*B*(I+H)*G*H per layer, backward twice that."""
    total = 0.0
    for inp, hid, layers in size.modules:
        for layer in range(layers):
            fan_in = inp if layer == 0 else hid
            total += 2 * size.steps * size.batch * (fan_in + hid) * GATES[cell] * hid
    return 3 * total


def peak_flops(n: int, repeats: int = 7) -> tuple[float, str]:
    """The machine's float32 matmul FLOP/s and what reached it: the fastest of a few n x n
    products after one warm-up, through torch.mm (MKL here) and, where this torch has it and it is
    on, torch's oneDNN inner product. Both, because on AMD CPUs with AVX-512 MKL runs its AVX2 code
    at half oneDNN's speed (on the Zen 5 EPYC of 2026-12-02, 2 threads, 171-185 against 350-398
    GFLOP/s on the layers' all-step products: bench_kernel_parts.py, "products"), and
    torch.nn.LSTM, the baseline, runs on oneDNN. The fastest, not the median: on a shared machine a
    slow repeat measures the neighbours, and the peak is what the machine can do (the median read
    118-276 GFLOP/s on the same 2 cores)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    routes = {"torch.mm": lambda: torch.mm(a, b)}
    linear = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if linear is not None and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        w = b.t().contiguous()
        routes["onednn"] = lambda: linear(a, w, None, "none", [None], "")
    best = {}
    for name, run in routes.items():
        run()
        best[name] = 2 * n ** 3 / min(seconds(run, 1) for _ in range(repeats))
    name = max(best, key=best.get)
    return best[name], name


def kernel_name(cfg: Config, x: torch.Tensor) -> str:
    """Which code runs the recurrence; raises ImportError while the stepwise kernel is missing."""
    impl = cfg.layer.get("implementation", "auto")
    if impl == "fused":
        return "aten"
    return pick_kernel(cfg.cell, x, reference_only=impl == "reference").__name__


def measure(size: Size, cfg: Config, repeats: int, min_time: float) -> dict:
    """Paired timing: warm up both, then per repeat time baseline and candidate back to back."""
    torch.manual_seed(0)
    x = torch.randn(size.steps, size.batch, size.modules[0][0], requires_grad=True)
    weight = torch.randn(size.steps, size.batch, size.modules[-1][1])
    kernel = kernel_name(cfg, x)
    steps = {"baseline": make_step(build(size, cfg, True), x, weight, None, cfg.autocast),
             "candidate": make_step(build(size, cfg, False), x, weight, cfg.penalty, cfg.autocast)}
    twin = build_twin(size, cfg)
    if twin is not None:
        steps["same_work"] = twin_step(twin, x, weight, cfg.penalty == "ar_tar")
    for step in steps.values():
        step()  # warm-up: allocator, thread pool, lazy kernel builds
    # Each timed block runs at least min_time seconds, so small sizes are not timer noise; the
    # calibration step doubles as a second warm-up (an AWD-size step takes seconds on 2 cores).
    iters = {name: max(1, math.ceil(min_time / seconds(step, 1))) for name, step in steps.items()}
    times = {name: [] for name in steps}
    faults = {name: [] for name in steps}  # minor page faults per iteration, per block
    names = list(steps)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # each contender leads in turn
        for name in order:
            before = minor_faults()
            times[name].append(seconds(steps[name], iters[name]))
            faults[name].append((minor_faults() - before) / iters[name])
    tokens = size.batch * size.steps
    ratios = [b / c for b, c in zip(times["baseline"], times["candidate"])]
    return {"kernel": kernel, "iters": iters, "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ratio_same_work": (statistics.median(t / c for t, c in zip(times["same_work"], times["candidate"]))
                                if "same_work" in times else None),
            "tokens_per_s": tokens / statistics.median(times["candidate"]),
            "baseline_tokens_per_s": tokens / statistics.median(times["baseline"]),
            "faults_per_iter": statistics.median(faults["candidate"]),
            "baseline_faults_per_iter": statistics.median(faults["baseline"]),
            "candidate_s": statistics.median(times["candidate"]),
            "baseline_s": statistics.median(times["baseline"])}


def json_stdout():
    """A private handle on the real stdout for the JSON lines; fd 1 itself is pointed at stderr so
    nothing else (a compiler, a library's print) can end up in the JSON stream."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    names = [c.name for c in CONFIGS]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated subset of {','.join(SIZES)}")
    p.add_argument("--configs", default=",".join(names), help=f"comma-separated subset of {','.join(names)}")
    p.add_argument("--repeats", type=int, help="paired repeats (default: 9 small/medium, 5 awd)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's default; 1 with --quick)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per timed block (default 0.5)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat, 1 thread: a smoke run")
    p.add_argument("--malloc", choices=("steady", "default"), default="steady",
                   help="steady (default): glibc keeps freed memory, no history-dependent page faults; "
                        "default: glibc's own adaptive thresholds")
    args = p.parse_args(argv)
    if any(v is not None and v < 1 for v in (args.repeats, args.threads)):
        p.error("--repeats and --threads must be positive")
    for flag, allowed in (("sizes", SIZES), ("configs", names)):
        chosen = [s for s in getattr(args, flag).split(",") if s]
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            p.error(f"unknown --{flag}: {', '.join(unknown)}")
        setattr(args, flag, chosen)
    return args


def json_line(size_name: str, size: Size, cfg: Config, result: dict, peak: float, peak_by: str,
              repeats: int, quick: bool, malloc: str) -> str:
    flops = stack_flops(size, cfg.cell)
    line = {"size": size_name, "config": cfg.name, "cell": cfg.cell,
            "baseline": f"torch.nn.{BASELINES[cfg.cell].__name__}",
            "implementation": cfg.layer.get("implementation", "auto"), "kernel": result["kernel"],
            "autocast": str(cfg.autocast).removeprefix("torch.") if cfg.autocast else None,
            "batch": size.batch, "steps": size.steps, "tokens_per_s": result["tokens_per_s"],
            "baseline_tokens_per_s": result["baseline_tokens_per_s"], "ratio": result["ratio"],
            "ratio_min": result["ratio_min"], "ratio_max": result["ratio_max"],
            "ratio_same_work": result["ratio_same_work"],
            "peak_fraction": flops / result["candidate_s"] / peak,
            "baseline_peak_fraction": flops / result["baseline_s"] / peak, "peak_gflops": peak / 1e9,
            "peak_by": peak_by, "repeats": repeats, "iters": result["iters"]["candidate"],
            "baseline_iters": result["iters"]["baseline"], "threads": torch.get_num_threads(),
            "torch": torch.__version__, "quick": quick, "malloc": malloc,
            "faults_per_iter": result["faults_per_iter"],
            "baseline_faults_per_iter": result["baseline_faults_per_iter"]}
    return json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in line.items()})


def main(argv=None) -> int:
    args = parse_args(argv)
    out = json_stdout()
    # --quick measures nothing, so it runs on one thread unless told otherwise: two OpenMP threads on
    # two cores that something else is also using can make a seconds-long smoke run take minutes.
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    sizes = QUICK_SIZES if args.quick else SIZES
    malloc = steady_malloc() if args.malloc == "steady" else "default"
    if args.malloc == "steady" and malloc != "steady":
        log(f"--malloc steady: {malloc} (glibc's mallopt is missing or refused the setting)")
    peak, peak_by = peak_flops(256 if args.quick else 2048)
    log(f"peak float32 matmul: {peak / 1e9:.1f} GFLOP/s ({peak_by}) on {torch.get_num_threads()} threads")
    for size_name in args.sizes:
        for cfg in (c for c in CONFIGS if c.name in args.configs and size_name in c.sizes):
            repeats = 1 if args.quick else (args.repeats or sizes[size_name].repeats)
            log(f"{size_name} / {cfg.name} ...")
            # torch.nn.LSTM fails under CPU bf16 autocast where oneDNN has no bf16 LSTM.
            if cfg.autocast == torch.bfloat16 and cfg.cell == "lstm" and not onednn_bf16_lstm():
                log(f"  skipped: torch.nn.LSTM fails under {cfg.autocast} autocast on this CPU "
                    "(oneDNN has no such kernel here), so there is no baseline")
                continue
            try:
                result = measure(sizes[size_name], cfg, repeats, 0.0 if args.quick else args.min_time)
            except ImportError as err:  # the stepwise C++ kernel is not there (yet)
                log(f"  skipped: {err}")
                continue
            out.write(json_line(size_name, sizes[size_name], cfg, result, peak, peak_by, repeats, args.quick,
                                malloc) + "\n")
            same = result["ratio_same_work"]
            log(f"  ratio {result['ratio']:.3f} [{result['ratio_min']:.3f}, {result['ratio_max']:.3f}] "
                f"({result['tokens_per_s']:.0f} vs {result['baseline_tokens_per_s']:.0f} tokens/s, "
                f"kernel {result['kernel']}; page faults per iteration {result['faults_per_iter']:.0f} vs "
                f"{result['baseline_faults_per_iter']:.0f})"
                + ("" if same is None else f"; vs plain PyTorch doing the same work {same:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
