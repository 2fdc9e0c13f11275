"""``rnnreg export RUN``: a trained language model for plain PyTorch (:mod:`rnnreg.runs.export`)."""

from __future__ import annotations

import argparse

from ..runs.run_dir import open_run_dir
from .common import UsageError, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's weights for plain PyTorch (torch.nn state dict, torch.export)",
                       description="Write RUN's language model as a torch.nn state dict (when its layers are "
                                   "torch.nn's in eval) and as a torch.export program, with export.json "
                                   "(sizes, vocabulary) beside them. Loading them needs torch, not rnnreg.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", help="output folder (default: RUN/export)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best validation weights or the last checkpoint (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1,
                   help="window length T the torch.export program takes; the batch size is free "
                        "(default: %(default)s, one token per call)")
    p.set_defaults(func=export_cmd)


def export_cmd(args: argparse.Namespace) -> int:
    from ..runs.export import export_run

    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    result = export_run(open_run_dir(args.run), args.out, which=args.checkpoint, steps=args.steps)
    if not result.written:
        raise UsageError(f"nothing to export from {args.run}: " + "; ".join(result.skipped))
    for line in result.skipped:
        say(line)
    for path in result.written:
        say(f"wrote {path}")
    return 0
