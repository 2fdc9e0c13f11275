"""``rnnreg eval``'s evaluation-time methods: the continuous cache pointer (``--cache``) and
dynamic evaluation (``--dynamic``), each printed beside the plain score of the same text, with
progress bars for the long passes and a record per score for ``RUN/evaluations.json``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from tqdm import tqdm

from ..tasks.lm_metrics import metric_value
from .common import UsageError, say

_DYNAMIC = ("lr", "decay", "epsilon", "bptt")   # the settings --dynamic-NAME overrides


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation-time methods (language models; one stream of text, batch size 1)")
    g.add_argument("--cache", type=int, metavar="WINDOW",
                   help="continuous cache pointer over the last WINDOW positions (Grave et al. 2016; "
                        "default: off)")
    g.add_argument("--cache-theta", type=float, metavar="T",
                   help="the cache's theta (default: the run's evaluation.cache_theta)")
    g.add_argument("--cache-lambda", type=float, metavar="L",
                   help="the cache's weight lambda in [0, 1] (default: the run's evaluation.cache_lambda)")
    g.add_argument("--cache-search", action="store_true",
                   help="choose theta and lambda on the validation split first (default: no search)")
    g.add_argument("--dynamic", action="store_true",
                   help="dynamic evaluation (Krause et al. 2017; default: off)")
    for name, kind, what in zip(_DYNAMIC, (float, float, float, int),
                                ("learning rate eta", "decay lambda", "epsilon", "segment length")):
        g.add_argument(f"--dynamic-{name}", type=kind, metavar="X",
                       help=f"dynamic evaluation's {what} (default: the run's evaluation.dynamic_{name})")
    g.add_argument("--dynamic-search", action="store_true",
                   help="dynamic evaluation with lr and decay chosen on the validation split from the "
                        "authors' grid (implies --dynamic; default: no search)")


def asked(args: argparse.Namespace) -> bool:
    return args.cache is not None or args.dynamic or args.dynamic_search


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse what cannot be meant, in one line, before anything is loaded."""
    cache_options = [o for o, v in (("--cache-theta", args.cache_theta), ("--cache-lambda", args.cache_lambda),
                                    ("--cache-search", args.cache_search or None)) if v is not None]
    if args.cache is None and cache_options:
        raise UsageError(f"{cache_options[0]} needs --cache WINDOW")
    dynamic = args.dynamic or args.dynamic_search
    dynamic_options = [f"--dynamic-{n}" for n in _DYNAMIC if getattr(args, f"dynamic_{n}") is not None]
    if not dynamic and dynamic_options:
        raise UsageError(f"{dynamic_options[0]} needs --dynamic")
    # A search chooses these itself: a value given beside it would be silently dropped.
    for search, flag, values in (("--cache-search", args.cache_search, (("--cache-theta", args.cache_theta),
                                                                          ("--cache-lambda", args.cache_lambda))),
                                 ("--dynamic-search", args.dynamic_search, (("--dynamic-lr", args.dynamic_lr),
                                                                              ("--dynamic-decay", args.dynamic_decay)))):
        given = [name for name, value in values if value is not None]
        if flag and given:
            raise UsageError(f"{search} chooses {' and '.join(n for n, _ in values)} itself; drop {given[0]}")
    if args.cache is not None and args.cache < 1:
        raise UsageError(f"--cache (the window) must be >= 1, got {args.cache}")
    if args.cache_theta is not None and not 0 <= args.cache_theta < float("inf"):
        raise UsageError(f"--cache-theta must be >= 0, got {args.cache_theta}")
    if args.cache_lambda is not None and not 0 <= args.cache_lambda <= 1:
        raise UsageError(f"--cache-lambda must be in [0, 1], got {args.cache_lambda}")
    for name, low, strict in (("lr", 0, True), ("decay", 0, False), ("epsilon", 0, True), ("bptt", 1, False)):
        value = getattr(args, f"dynamic_{name}")
        if value is not None and not ((value > low if strict else value >= low) and value != float("inf")):
            raise UsageError(f"--dynamic-{name} must be {'>' if strict else '>='} {low}, got {value}")
    if not asked(args):
        return
    method = "--cache" if args.cache is not None else "--dynamic"
    if args.mc_samples:
        raise UsageError(f"{method} and --mc-samples are two different evaluations; run them one at a time")
    if args.batch_size not in (None, 1):
        raise UsageError(f"{method} reads the split as one stream of text (batch size 1, as its paper); "
                         f"drop --batch-size {args.batch_size}")


def run(args: argparse.Namespace, trained: Any) -> tuple[list[dict[str, Any]], str]:
    """Score the asked methods, print them beside the plain score; the records to keep (method,
    settings, loss, wall_s) and the metric."""
    if trained.spec.head != "lm":
        method = "--cache" if args.cache is not None else "--dynamic"
        raise UsageError(f"{method} is for language models; {args.run} trained a {trained.config.task.kind!r} task")
    e, results = trained.config.evaluation, []
    if args.cache is not None:
        start = time.perf_counter()
        theta = e.cache_theta if args.cache_theta is None else args.cache_theta
        lambda_ = e.cache_lambda if args.cache_lambda is None else args.cache_lambda
        results.append((trained.evaluate_cache(args.split, window=args.cache, theta=theta, lambda_=lambda_,
                                               search=args.cache_search, stages=progress_bars),
                        time.perf_counter() - start))
    if args.dynamic or args.dynamic_search:
        start = time.perf_counter()
        given = {n: getattr(args, f"dynamic_{n}") for n in _DYNAMIC}
        pick = {n: getattr(e, f"dynamic_{n}") if value is None else value for n, value in given.items()}
        results.append((trained.evaluate_dynamic(args.split, **pick, batch_size=e.dynamic_batch_size,
                                                 max_batches=e.dynamic_max_batches, search=args.dynamic_search,
                                                 stages=progress_bars), time.perf_counter() - start))
    for scores, _ in results:
        if scores.search:
            _print_search(scores)
    _print_block(args, trained, [s for s, _ in results])
    records = [record for scores, wall in results for record in _records(scores, wall)]
    # One plain record: every method's plain score is the same pass over the same text.
    return [r for k, r in enumerate(records) if r["method"] != "plain" or k == 0], results[0][0].metric


def progress_bars(stage: str):
    """A tqdm bar for one stage of a long evaluation, on stderr (none when it is not a terminal)."""
    bar: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=stage, unit="tok", unit_scale=True, dynamic_ncols=True,
                              file=sys.stderr, leave=False, disable=None)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()
    return update


def _settings_text(scores: Any) -> str:
    s = scores.settings
    if scores.method == "cache":
        return f"window {s['window']}, theta {s['theta']:g}, lambda {s['lambda']:g}"
    return f"lr {s['lr']:g}, decay {s['decay']:g}, epsilon {s['epsilon']:g}, segments of {s['bptt']}"


def _print_search(scores: Any) -> None:
    """The validation grid, rows by the first setting, columns by the second, and its best."""
    names = ("theta", "lambda") if scores.method == "cache" else ("lr", "decay")
    firsts = sorted({a for a, _ in scores.search})
    seconds = sorted({b for _, b in scores.search})
    m = scores.metric
    say(f"{scores.method} search on valid ({m}; rows {names[0]}, columns {names[1]}):")
    rows = [[f"{names[0]} \\ {names[1]}"] + [f"{b:g}" for b in seconds]]
    rows += [[f"{a:g}"] + [_value(scores.search.get((a, b)), m) for b in seconds] for a in firsts]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        say("  " + "  ".join(cell.rjust(w) for cell, w in zip(r, widths)))
    best = min(scores.search.values())
    say(f"best on valid: {_settings_text(scores)}: {m} {_value(best, m)} (plain {_value(scores.search_plain, m)})")


def _value(loss: float | None, metric: str) -> str:
    return "-" if loss is None else f"{metric_value(loss, metric):.2f}"


def _print_block(args: argparse.Namespace, trained: Any, results: list[Any]) -> None:
    m = results[0].metric
    step = f", step {trained.step}" if trained.step is not None else ""
    say(f"{args.split} ({args.checkpoint} weights{step}; one stream of text, batch size 1):")
    lines = [("plain", results[0].plain, "")]
    for r in results:
        plain, ours = metric_value(r.plain, m), metric_value(r.loss, m)
        gain = f"{ours - plain:+.2f} {m} ({100 * (ours - plain) / plain:+.1f}%)" if plain else ""
        lines.append((f"{r.method} ({_settings_text(r)})", r.loss, gain))
    width = max(len(name) for name, _, _ in lines)
    for name, loss, gain in lines:
        say(f"  {name.ljust(width)}  loss {loss:.4f}  {m} {metric_value(loss, m):.2f}  {gain}".rstrip())


def _records(scores: Any, wall_s: float) -> list[dict[str, Any]]:
    """(method, settings, loss, wall time) of the plain and the method's score."""
    search = None if scores.search is None else {
        "split": "valid", "plain": scores.search_plain,
        "grid": [[a, b, loss] for (a, b), loss in scores.search.items()]}
    settings = dict(scores.settings, **({"search": search} if search else {}))
    return [dict(method="plain", settings={"batch_size": 1}, loss=scores.plain, wall_s=0.0),
            dict(method=scores.method, settings=settings, loss=scores.loss, wall_s=wall_s)]
