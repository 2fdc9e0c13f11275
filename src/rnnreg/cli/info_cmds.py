"""Commands that read, never train: ``presets`` (list, show) and ``report``."""

from __future__ import annotations

import argparse

from .common import say


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the shipped presets, or show one as TOML",
                       description="`rnnreg presets` lists them; `rnnreg presets show NAME` prints the "
                                   "resolved configuration (inheritance applied) as TOML.")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list",
                   help="list the presets, or show one (default: %(default)s)")
    p.add_argument("name", nargs="?", help="the preset to show (with `show`; default: none)")
    p.set_defaults(func=presets)

    p = sub.add_parser("report", help="table of finished runs beside the papers' numbers")
    p.add_argument("root", nargs="?", default="runs", help="a folder of runs, or one run (default: %(default)s)")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (default: a plain-text table)")
    p.set_defaults(func=report)


def presets(args: argparse.Namespace) -> int:
    from ..config import dump_config, load_config, preset_names
    from .common import UsageError

    if args.action == "show":
        if not args.name:
            raise UsageError("rnnreg presets show NAME (names: rnnreg presets)")
        say(dump_config(load_config(args.name)))
        return 0
    for name in preset_names():
        config = load_config(name)
        refs = "; ".join(f"{r.source}{'' if r.method == 'plain' else f' [{r.method}]'}: "
                         + " / ".join(f"{v}" for v in (r.valid, r.test) if v is not None)
                         for r in config.expect.references)
        say(f"{name:<26} {config.description}" + (f"\n{'':<26} reference: {refs}" if refs else ""))
    return 0


def report(args: argparse.Namespace) -> int:
    from ..runs.report import NoRunsFolder, collect_runs, format_report
    from .common import UsageError

    try:
        rows = collect_runs(args.root)
    except NoRunsFolder as err:
        raise UsageError(str(err)) from None
    say(format_report(rows, markdown=args.markdown))
    return 0
