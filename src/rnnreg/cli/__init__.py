"""The rnnreg command line: ``main(argv) -> exit code``. The only package that prints.

Every expected failure (a bad config key, missing data, a corrupt checkpoint, a vocabulary that
does not match) is reported in one line on stderr with exit code 2, and no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .common import UsageError, prepare_extension

EXIT_USAGE = 2


def _kernels(args: argparse.Namespace) -> int:
    return 0 if prepare_extension() else 1


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import export_cmd, info_cmds, run_cmds, train_cmd

    parser = argparse.ArgumentParser(
        prog="rnnreg", description="Regularized recurrent neural networks: train and evaluate language models "
                                   "and sequence tasks (adding, MNIST, GRU-D, Clockwork, seq2seq, CTC), and reproduce the papers' presets.",
        epilog="Start with `rnnreg train` (the quickstart preset on bundled Tiny Shakespeare).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (default: warnings only)")
    parser.add_argument("--version", action="version", version=f"rnnreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train_cmd.add_parser(sub)
    run_cmds.add_parsers(sub)
    export_cmd.add_parser(sub)
    info_cmds.add_parsers(sub)
    kernels = sub.add_parser("kernels", help="build (once) and check the fast stepwise C++ kernel")
    kernels.set_defaults(func=_kernels)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from ..runs.checkpoint import CheckpointError
    from ..config import ConfigError
    from ..data import DataError
    from ..runs.metrics import MetricsFormatError
    from ..runs.plots import RunPlotError
    from ..training.loop import TrainingError
    from ..training.preflight import PreflightError
    from ..runs.trained import DataMismatch

    return (UsageError, ConfigError, DataError, CheckpointError, TrainingError, DataMismatch,
            MetricsFormatError, RunPlotError, PreflightError)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting section.key=value overrides come after options too (``rnnreg train PRESET
    --quiet train.epochs=2``): argparse stops a positional list at the first option."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    target = "args" if hasattr(args, "args") else "overrides" if hasattr(args, "overrides") else None
    if extra and (target is None or any(item.startswith("-") or "=" not in item for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        setattr(args, target, [*getattr(args, target), *extra])
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except _expected_errors() as err:
        print(f"rnnreg {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 0
