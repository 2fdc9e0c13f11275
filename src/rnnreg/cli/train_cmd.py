"""``rnnreg train [PRESET | file.toml] [section.key=value ...]`` and ``--resume RUN``."""

from __future__ import annotations

import argparse
import signal
import time
from contextlib import contextmanager
from typing import Iterator

from ..config import apply_overrides, config_from_dict, config_to_dict, load_config, preset_names
from ..tasks.build import build_task
from ..training.distributed import Distributed
from ..training.loop import train
from ..runs.run_dir import new_run_dir, open_run_dir
from .common import UsageError, prepare_extension, say, uses_extension


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a language model or a sequence task from a preset or TOML file",
        description="Train a regularized recurrent network: a language model, or a sequence task "
                    "(task.kind = adding, mnist, missing, clockwork, seq2seq, ctc). With no preset, "
                    "`quickstart` (a character LSTM on the bundled Tiny Shakespeare, a few minutes on a "
                    "laptop CPU). "
                    f"Presets: {', '.join(preset_names())}. Override any setting with "
                    "section.key=value, e.g. model.hidden_size=256 train.epochs=2 data.path=/data/ptb.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("args", nargs="*", metavar="PRESET_OR_OVERRIDE",
                   help="a preset name or a .toml file (optional, first), then section.key=value overrides")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this directory from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


@contextmanager
def _stop_on_signals() -> Iterator[list[bool]]:
    """SIGINT / SIGTERM ask the loop to checkpoint and stop; a second SIGINT interrupts at once."""
    flag = [False]

    def handler(signum, frame):
        if flag[0] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag[0] = True
        say(f"\n{signal.Signals(signum).name}: saving a checkpoint and stopping (again to abort)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run(args: argparse.Namespace) -> int:
    from .progress import ProgressBar

    source = args.args[0] if args.args and "=" not in args.args[0] else None
    overrides = args.args[1:] if source else args.args
    dist = Distributed.from_env()
    if args.resume:
        if source:
            raise UsageError("give either a preset or --resume RUN, not both")
        run_dir = open_run_dir(args.resume)
        config = run_dir.read_config()
        if overrides:
            config = config_from_dict(apply_overrides(config_to_dict(config), overrides))
    else:
        config = load_config(source, overrides)
    data = build_task(config)                   # bad data fails here, before anything is written
    if not args.resume:
        # Under torchrun, rank 0 picks the directory and the others learn its name.
        run_dir = dist.share(new_run_dir(config.train.out_dir, config.name) if dist.is_main else None,
                             dist.device(config.train.device))
        if dist.is_main:
            run_dir.write_config(config)
    if uses_extension(config.model) and dist.is_main:
        prepare_extension()
    show = dist.is_main and not args.quiet
    start = time.perf_counter()
    with _stop_on_signals() as flag:
        summary = train(config, run_dir, task=data, resume=bool(args.resume),
                        observer=ProgressBar(enabled=show), stop_requested=lambda: flag[0])
    if dist.is_main:
        _print_summary(summary, run_dir.path, time.perf_counter() - start)
    return 0 if summary["status"] in ("finished", "stopped") else 1


def _print_summary(summary: dict, path, seconds: float) -> None:
    metric = summary["metric"]
    if summary.get("sample"):
        say("\n--- sample (best weights) ---\n" + summary["sample"] + "\n---")
    valid, test = summary.get("valid"), summary.get("test")
    numbers = f"valid {metric} {valid}" + (f", test {metric} {test}" if test is not None else "")
    if summary.get("test_scores"):
        others = {k: v for k, v in summary["test_scores"].items() if k not in ("loss", metric) and v is not None}
        numbers += "".join(f", test {k} {v:g}" for k, v in others.items())
    if summary.get("valid_mc") is not None:
        numbers += f", MC-dropout valid {metric} {summary['valid_mc']}"
    say(f"{summary['status']}: {numbers} after {summary['steps']} steps ({seconds / 60:.1f} min)")
    commands = "plot", "eval", *(("generate",) if summary["task"] == "lm" else ())
    say(f"run directory: {path}   ({' | '.join(f'rnnreg {c} {path}' for c in commands)})")
    if summary["status"] == "stopped":
        say(f"resume with: rnnreg train --resume {path}")
