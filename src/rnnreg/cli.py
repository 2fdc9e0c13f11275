"""The rnnreg command line. ``main(argv) -> exit code``; the only module that prints."""

from __future__ import annotations

import argparse
import sys
import time

EXIT_USAGE = 2


def _prepare_extension() -> bool:
    from .kernels import fast

    print("loading the C++ extension (built once on first use, about 45 s on 2 cores) ...", flush=True)
    start = time.perf_counter()
    ready = fast.fast_available()
    state = "ready" if ready else "unavailable, using the plain-autograd reference"
    print(f"C++ extension {state} ({time.perf_counter() - start:.1f} s)")
    return ready


def _demo(args: argparse.Namespace) -> int:
    from .demo import BASELINE_MSE, run_demo

    _prepare_extension()
    print(f"adding problem, T={args.seq_len}: LSTM with zoneout (h 0.05, c 0.3), weight drop 0.1 "
          f"and the norm-stabilizer; always answering 1 scores MSE {BASELINE_MSE}")
    start = time.perf_counter()
    last = None
    for last in run_demo(steps=args.steps, seq_len=args.seq_len, seed=args.seed):
        print(f"step {last.step:5d}  train mse {last.mse:.4f}  valid mse {last.valid_mse:.4f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    verdict = "below" if last.valid_mse < BASELINE_MSE else "not yet below"
    print(f"final valid mse {last.valid_mse:.4f}: {verdict} the {BASELINE_MSE} baseline")
    return 0


def _kernels(args: argparse.Namespace) -> int:
    return 0 if _prepare_extension() else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnreg", description="Regularized recurrent neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a regularized LSTM on the adding problem (under a minute)")
    demo.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    demo.add_argument("--seq-len", type=int, default=50, help="sequence length T (default 50)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    kernels = sub.add_parser("kernels", help="build (once) and check the fast stepwise C++ kernel")
    kernels.set_defaults(func=_kernels)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "steps", 1) < 1 or getattr(args, "seq_len", 2) < 2:
        print("rnnreg: error: --steps must be >= 1 and --seq-len >= 2", file=sys.stderr)
        return EXIT_USAGE
    return args.func(args)
