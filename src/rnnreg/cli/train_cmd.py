"""``rnnreg train [PRESET | file.toml] [section.key=value ...]`` and ``--resume RUN``."""

from __future__ import annotations

import argparse
import signal
import time
from contextlib import ExitStack, contextmanager
from typing import Iterator

from ..config import load_config, preset_names
from ..tasks.build import build_task, model_refusal
from ..training.distributed import Distributed
from ..training.loop import train
from ..runs.run_dir import RunDir, new_run_dir, open_run_dir
from .common import UsageError, prepare_extension, say, uses_extension


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a language model or a sequence task from a preset or TOML file",
        description="Train a regularized recurrent network: a language model, or a sequence task "
                    "(task.kind = adding, mnist, missing, clockwork, seq2seq, ctc). With no preset, "
                    "`quickstart` (a character LSTM on the bundled Tiny Shakespeare, a few minutes on a "
                    "laptop CPU). "
                    f"Presets: {', '.join(preset_names())}. Override any setting with "
                    "section.key=value, e.g. model.hidden_size=256 train.epochs=2 data.path=/data/ptb.")
    # Defaults in words (not ArgumentDefaultsHelpFormatter's "(default: None)").
    p.add_argument("args", nargs="*", metavar="PRESET_OR_OVERRIDE",
                   help="a preset name or a .toml file (optional, first; default: quickstart), then "
                        "section.key=value overrides (default: none)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this directory from its last "
                                                   "checkpoint (default: start a new run)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar; a failed run still says why (default: show the bar)")
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
    from ..training import preflight
    from .progress import ProgressBar

    source = args.args[0] if args.args and "=" not in args.args[0] else None
    overrides = args.args[1:] if source else args.args
    dist = Distributed.from_env()
    if args.resume:
        if source:
            raise UsageError("give either a preset or --resume RUN, not both")
        run_dir = open_run_dir(args.resume)
        if run_dir.finished_summary() is not None:
            return _already_finished(run_dir, overrides, dist)
        config = run_dir.resume_config(overrides)   # budgets and outputs only
    else:
        config = load_config(source, overrides)
    # Everything a user can get wrong fails here, before anything is written.
    preflight.check(config, resume_dir=run_dir.path if args.resume else None)
    data = build_task(config)
    refusal = model_refusal(config, data.model_spec())
    if refusal:
        raise UsageError(refusal)
    with ExitStack() as held:
        if args.resume:
            if dist.is_main:
                held.enter_context(_owned(run_dir))
            if run_dir.finished_summary() is not None:  # finished by another process meanwhile
                return _already_finished(run_dir, overrides, dist)
            if dist.is_main and config != run_dir.read_config():
                run_dir.write_config(config)        # the overrides, so config.toml says what ran
        else:
            # Under torchrun, rank 0 picks the directory (and owns it); the others learn its name.
            run_dir = dist.share(_new_owned(config, held) if dist.is_main else None,
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


@contextmanager
def _owned(run_dir: RunDir) -> Iterator[None]:
    """Hold the run directory's lock (one process per run) for the block, or a one-line refusal."""
    from ..runs.lock import RunLock, RunLocked

    try:
        lock = RunLock(run_dir.path).acquire()
    except RunLocked as err:
        raise UsageError(str(err)) from None
    try:
        yield
    finally:
        lock.release()


def _new_owned(config, held: ExitStack) -> RunDir:
    """A new run directory, locked before anything is written into it."""
    run_dir = new_run_dir(config.train.out_dir, config.name)
    held.enter_context(_owned(run_dir))
    return run_dir


def _already_finished(run_dir: RunDir, overrides: list[str], dist: Distributed) -> int:
    """Resuming a finished run changes nothing; overrides could only be ignored, so they are refused."""
    if overrides:
        raise UsageError(f"{run_dir.path} is finished, so there is nothing to resume and "
                         f"{' '.join(overrides)} would change nothing; start a new run with them instead")
    if dist.is_main:
        steps = run_dir.finished_summary().get("steps")
        say(f"{run_dir.path} is already finished (after {steps} steps); nothing to resume, nothing changed")
    return 0


def _print_summary(summary: dict, path, seconds: float) -> None:
    """What happened, in words: only the numbers that exist (no "valid bpc None" when no
    validation ran), why a failed run failed (its events are hidden as they happen under
    --quiet), and only the follow-up commands that will work on what the run left."""
    from pathlib import Path

    from ..runs.run_dir import RunDir

    run, metric = RunDir(Path(path)), summary["metric"]
    if summary.get("sample"):
        say("\n--- sample (best weights) ---\n" + summary["sample"] + "\n---")
    numbers = [f"{split} {metric} {summary[split]}" for split in ("valid", "test") if summary.get(split) is not None]
    numbers += [f"test {k} {v:g}" for k, v in (summary.get("test_scores") or {}).items()
                if k not in ("loss", metric) and v is not None]
    if summary.get("valid_mc") is not None:
        numbers.append(f"MC-dropout valid {metric} {summary['valid_mc']}")
    steps = summary["steps"]
    say(f"{summary['status']}: {', '.join(numbers) or 'no validation score'} after {steps} "
        f"step{'' if steps == 1 else 's'} ({seconds / 60:.1f} min)")
    if summary["status"] == "failed":
        say(f"why: {_last_event(run) or 'no event was logged in ' + str(run.metrics)}")
    commands = [f"rnnreg plot {path}"] if steps else []           # the first step is always logged
    if run.best.exists():
        commands += [f"rnnreg eval {path}", *([f"rnnreg generate {path}"] if summary["task"] == "lm" else [])]
    elif run.last.exists():
        commands.append(f"rnnreg eval {path} --checkpoint last")
    say(f"run directory: {path}" + (f"   ({' | '.join(commands)})" if commands else ""))
    if summary["status"] == "stopped":
        say(f"resume with: rnnreg train --resume {path}")


def _last_event(run: RunDir) -> str | None:
    """The last event of the run's log: for a failed run, what stopped it."""
    from ..runs.metrics import read_metrics

    try:
        events = [r for r in read_metrics(run.metrics) if r.get("kind") == "event"]
    except (OSError, ValueError):                       # no log, or not one rnnreg wrote
        return None
    return str(events[-1].get("message")) if events else None
