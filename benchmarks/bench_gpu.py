"""Training throughput on a CUDA GPU of rnnreg's recurrences, as a ratio to cuDNN's torch.nn.LSTM /
GRU measured in the same run, and the torch.compile compile time of the rnnreg stack.

Per (size, configuration, precision) the contenders are: cuDNN (the baseline), the rnnreg layers as
configured (they pick their kernel themselves: kernels.pick_kernel), and the same recurrence called
straight through kernels/steploop.py with torch pointwise ops, with Triton pointwise kernels, and
with Triton plus the forward loop's CUDA graphs. Sizes and the pairing method are
bench_layers.py's (read its docstring and README.md); precision fp32, or bf16 under autocast.
float32 means full float32 on both sides unless ``--tf32`` allows TF32 on both (``set_tf32``).
stdout carries one JSON line per result and nothing else; progress goes to stderr.

    python benchmarks/bench_gpu.py                   # everything (tens of minutes)
    python benchmarks/bench_gpu.py --quick           # tiny sizes, one repeat: a smoke run
    python benchmarks/bench_gpu.py --sizes small --configs zoneout,gru --dtypes bf16 --no-compile

Exits with status 2 and a one-line message on stderr where no CUDA device is present
(``--device cpu`` runs the same code on the CPU, as a smoke test of the script only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_layers as bl  # noqa: E402 - the sibling benchmark: sizes, configs, steps, JSON stdout

from rnnreg.kernels import steploop, steploop_graphs  # noqa: E402
from rnnreg.penalties import ar, tar  # noqa: E402


@dataclass(frozen=True)
class GpuConfig:
    layer: bl.Config  # the rnnreg layers' configuration (bench_layers' Config)
    kernel: dict = field(default_factory=dict)  # the same interventions for the direct kernel stack


STEP = {"implementation": "stepwise"}
AWD = {"weight_p": 0.5, **bl.AWD_DROPOUTS, "ar_tar": True}
CONFIGS = {
    "plain": GpuConfig(bl.Config("plain", layer=STEP)),
    "awd": GpuConfig(bl.Config("awd", layer={"implementation": "fused", "weight_p": 0.5},
                               dropouts=bl.AWD_DROPOUTS, penalty="ar_tar"), AWD),
    "zoneout": GpuConfig(bl.Config("zoneout", layer={**STEP, "zoneout_h_p": 0.05, "zoneout_c_p": 0.5}),
                         {"zoneout_h": 0.05, "zoneout_c": 0.5}),
    "recurrent_dropout": GpuConfig(bl.Config("recurrent_dropout", layer={**STEP, "recurrent_dropout": 0.25}),
                                   {"rec": 0.25}),
    "peepholes": GpuConfig(bl.Config("peepholes", layer={**STEP, "peepholes": True}), {"peep": True}),
    "gru": GpuConfig(bl.Config("gru", cell="gru", layer=STEP)),
}
DIRECT = {"steploop_torch": ("torch", False), "steploop_triton": ("triton", False),
          "steploop_triton_graphs": ("triton", True)}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class KernelStack(torch.nn.Module):
    """The configuration's recurrence through kernels/steploop.py directly: torch.nn-shaped
    parameters per layer, per-step noise drawn each call, weight drop on W_hh, AWD's locked
    dropouts (input_p / hidden_p / output_p) and AR/TAR on the last layer's output."""

    def __init__(self, size: bl.Size, cell: str, opts: dict):
        super().__init__()
        widths = [(i if k == 0 else h, h) for i, h, n in size.modules for k in range(n)]
        self.rnns = torch.nn.ModuleList(bl.BASELINES[cell](i, h, 1) for i, h in widths)
        self.peep = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(3 * h) * 0.1)
                                           for _, h in widths) if opts.get("peep") else None
        self.cell, self.opts = cell, opts

    def _locked(self, x: torch.Tensor, p: float) -> torch.Tensor:
        if not p:
            return x
        return x * (torch.rand_like(x[:1]) > p).to(x.dtype) / (1 - p)  # (1, B, F): one mask per sequence

    def _noise(self, shape: tuple[int, int, int], like: torch.Tensor) -> dict:
        """Fresh zoneout weights (T, B, H) and recurrent-dropout mask (B, H), as the layers draw."""
        o, noise = self.opts, {}
        if o.get("zoneout_h"):
            noise["keep_h"] = (torch.rand(shape, device=like.device) < o["zoneout_h"]).float()
        if o.get("zoneout_c") and self.cell == "lstm":
            noise["keep_c"] = (torch.rand(shape, device=like.device) < o["zoneout_c"]).float()
        if o.get("rec"):
            keep = torch.rand(shape[1:], device=like.device) > o["rec"]  # (B, H)
            noise["rec_mask"] = keep.float() / (1 - o["rec"])
        return noise

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o, out = self.opts, x
        for k, rnn in enumerate(self.rnns):
            out = self._locked(out, o.get("input_p", 0) if k == 0 else o.get("hidden_p", 0))
            w_hh = F.dropout(rnn.weight_hh_l0, o["weight_p"]) if o.get("weight_p") else rnn.weight_hh_l0
            T, B, H = out.shape[0], out.shape[1], rnn.hidden_size
            h0 = out.new_zeros(B, H)
            args = (out, h0, rnn.weight_ih_l0, w_hh, rnn.bias_ih_l0, rnn.bias_hh_l0)
            noise = self._noise((T, B, H), out)
            if self.cell == "lstm":
                peep = self.peep[k] if self.peep is not None else None
                out = steploop.lstm_steploop(out, h0, h0, *args[2:], peep, **noise)[0]
            else:
                out = steploop.gru_steploop(*args, noise.get("rec_mask"), noise.get("keep_h"))
        return self._locked(out, o.get("output_p", 0)), out


def _autocast(x: torch.Tensor, dtype: torch.dtype | None):
    return torch.autocast(x.device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def kernel_step(stack: KernelStack, x, weight, backend: str, graphs: bool, autocast: torch.dtype | None):
    def step() -> None:
        x.grad = None
        stack.zero_grad(set_to_none=True)
        with steploop.pointwise_backend(backend), _autocast(x, autocast):
            steploop_graphs.use_cuda_graphs(graphs)
            dropped, raw = stack(x)
            loss = (dropped.float() * weight).sum()
            if stack.opts.get("ar_tar"):
                loss = loss + ar(dropped, 2.0) + tar(raw, 1.0)
        loss.backward()
        steploop_graphs.use_cuda_graphs(False)
    return step


def layer_step(modules, x, weight, penalty, autocast):
    """bench_layers.make_step's iteration, with the forward (only) under autocast."""
    kwargs = ({"return_states": penalty == "ar_tar", "return_cells": penalty == "norm_cells"}
              if penalty else {})

    def step() -> None:
        x.grad = None
        for m in modules:
            m.zero_grad(set_to_none=True)
        with _autocast(x, autocast):
            out, states = x, None
            for m in modules:
                result = m(out, **kwargs)
                out, states = result[0], (result[2] if kwargs else None)
            loss = (out.float() * weight).sum() + bl.penalty_of(states, penalty)
        loss.backward()
    return step


def timed(step, device: torch.device, iters: int) -> float:
    """Seconds per iteration, the device drained before and after."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return (time.perf_counter() - start) / iters


def measure(steps: dict, device, repeats: int, min_time: float) -> dict[str, dict[str, float]]:
    """Paired timing (bench_layers.measure's method, several candidates): warm up each, calibrate
    blocks of at least min_time, then per repeat time every contender back to back, rotating the
    order. Returns each contender's median seconds and its median per-repeat ratio to 'cudnn'."""
    for step in steps.values():
        step()  # warm-up: cuDNN plans, Triton compiles, CUDA-graph captures
    iters = {n: max(1, math.ceil(min_time / timed(s, device, 1))) for n, s in steps.items()}
    names, times = list(steps), {n: [] for n in steps}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            times[n].append(timed(steps[n], device, iters[n]))
    return {n: {"s": statistics.median(times[n]),
                "ratio": statistics.median(b / c for b, c in zip(times["cudnn"], times[n]))}
            for n in names}


def compile_seconds(modules, x, weight, penalty, autocast, device) -> float:
    """First compiled iteration minus a steady one: what torch.compile of the rnnreg stack costs.
    allow_rnn: dynamo leaves torch.nn RNN subclasses (rnnreg's layers are) to eager otherwise."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_rnn=True):
        step = layer_step([torch.compile(m) for m in modules], x, weight, penalty, autocast)
        first = timed(step, device, 1)
        return first - statistics.median(timed(step, device, 1) for _ in range(3))


def run_one(size_name, size, name, cfg, dtype_name, device, args, out) -> None:
    torch.manual_seed(0)
    autocast = torch.bfloat16 if dtype_name == "bf16" else None
    x = torch.randn(size.steps, size.batch, size.modules[0][0], device=device, requires_grad=True)
    weight = torch.randn(size.steps, size.batch, size.modules[-1][1], device=device)
    layers = [m.to(device) for m in bl.build(size, cfg.layer, False)]
    steps = {"cudnn": layer_step([m.to(device) for m in bl.build(size, cfg.layer, True)], x, weight,
                                 None, autocast),
             "layer": layer_step(layers, x, weight, cfg.layer.penalty, autocast)}
    for contender, (backend, graphs) in DIRECT.items():
        if (backend == "triton" and not steploop.triton_available(x)) or (graphs and device.type != "cuda"):
            log(f"  {contender}: skipped on {device}")
            continue
        stack = KernelStack(size, cfg.layer.cell, cfg.kernel).to(device)
        steps[contender] = kernel_step(stack, x, weight, backend, graphs, autocast)
    result = measure(steps, device, args.repeats or (1 if args.quick else size.repeats),
                     0.0 if args.quick else args.min_time)
    tokens = size.batch * size.steps
    kernel = bl.kernel_name(cfg.layer, x)
    for contender, r in result.items():
        if contender == "cudnn":
            continue
        line = {"kind": "throughput", "size": size_name, "config": name, "cell": cfg.layer.cell,
                "dtype": dtype_name, "contender": contender, "layer_kernel": kernel,
                "baseline": f"torch.nn.{bl.BASELINES[cfg.layer.cell].__name__}",
                "tokens_per_s": tokens / r["s"], "baseline_tokens_per_s": tokens / result["cudnn"]["s"],
                "ratio": r["ratio"], "tf32": args.tf32, "device": str(device), "torch": torch.__version__,
                "quick": args.quick}
        out.write(json.dumps(line) + "\n")
        log(f"  {contender}: ratio {r['ratio']:.3f} ({tokens / r['s']:.0f} tokens/s)")
    steploop_graphs.clear_cuda_graphs()
    # Compile timing once per config and dtype (first size only); --quick: for the first of each.
    first = (name, dtype_name) == (args.configs[0], args.dtypes[0]) if args.quick else \
        size_name == args.sizes[0]
    if args.compile and first:
        secs = compile_seconds(layers, x, weight, cfg.layer.penalty, autocast, device)
        out.write(json.dumps({"kind": "compile", "size": size_name, "config": name, "dtype": dtype_name,
                              "compile_s": secs, "tf32": args.tf32, "device": str(device),
                              "torch": torch.__version__,
                              "quick": args.quick}) + "\n")
        log(f"  torch.compile: {secs:.1f} s")


def set_tf32(on: bool) -> None:
    """The same float32 arithmetic on both sides. torch's defaults differ: cuDNN's RNNs may use
    TF32 (``cudnn.allow_tf32`` True) while cuBLAS's matmuls, the step loop's, may not
    (``cuda.matmul.allow_tf32`` False), which would bias every float32 ratio against rnnreg. The
    legacy switches only: torch refuses a mix of them with the newer ``fp32_precision`` ones."""
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(bl.SIZES), help=f"subset of {','.join(bl.SIZES)}")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    p.add_argument("--dtypes", default="fp32,bf16", help="subset of fp32,bf16 (bf16: autocast)")
    p.add_argument("--repeats", type=int, help="paired repeats (default: bench_layers' per size)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per timed block (default 0.2)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip the torch.compile timing (by default once per config and dtype)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke run")
    p.add_argument("--device", default="cuda", help="cuda (default), or cpu for a smoke test of the script")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 in float32 matrix products, cuDNN's and cuBLAS's alike (default: "
                        "neither, so that both contenders compute in full float32)")
    args = p.parse_args(argv)
    for flag, allowed in (("sizes", bl.SIZES), ("configs", CONFIGS), ("dtypes", ("fp32", "bf16"))):
        chosen = [s for s in getattr(args, flag).split(",") if s]
        if set(chosen) - set(allowed):
            p.error(f"unknown --{flag}: {', '.join(sorted(set(chosen) - set(allowed)))}")
        setattr(args, flag, chosen)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("bench_gpu: no CUDA device (torch.cuda.is_available() is False); nothing measured")
        return 2
    set_tf32(args.tf32)
    out = bl.json_stdout()
    sizes = bl.QUICK_SIZES if args.quick else bl.SIZES
    for dtype_name in args.dtypes:
        for size_name in args.sizes:
            for name in args.configs:
                log(f"{size_name} / {name} / {dtype_name} ...")
                run_one(size_name, sizes[size_name], name, CONFIGS[name], dtype_name, device, args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
