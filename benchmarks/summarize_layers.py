"""Summarize bench_layers.py results files as one Markdown table: a row per configuration (in
bench_layers.py's order), a column per size, each cell the paired ratio to torch.nn's layer (the
range of the files' medians when several files measured it), the repeats' spread in brackets with
``--spread``, the same-work ratio in parentheses with ``--same-work``; ``--max-faults`` leaves out
the lines where glibc's allocator handed a contender fresh pages (benchmarks/README.md, "Allocator").
A malformed line, or a configuration or size no file has, is one line on stderr and exit status 2.

The README's Speed tables are this script's output; their provenance is the command line above
each one:

    python benchmarks/summarize_layers.py benchmarks/results/2026-12-03-layers-xeon-spr-2core-steady.jsonl
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

SIZES = ("small", "medium", "awd")
NUMBERS = ("ratio", "peak_gflops", "threads")  # every line has these; --spread needs ratio_min/_max
TEXTS = ("config", "baseline", "torch")


def checked(row: object, where: str, spread: bool) -> dict:
    """The line as a dict, or a ValueError naming the file and line and what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: not a JSON object")
    for key in NUMBERS + (("ratio_min", "ratio_max") if spread else ()):
        if not isinstance(row.get(key), (int, float)):
            raise ValueError(f"{where}: {key!r} is missing or not a number")
    for key in TEXTS:
        if not isinstance(row.get(key), str):
            raise ValueError(f"{where}: {key!r} is missing or not a string")
    if row.get("size") not in SIZES:
        raise ValueError(f"{where}: size {row.get('size')!r} is not one of {', '.join(SIZES)}")
    return row


def read_rows(paths: list[Path], spread: bool = False) -> list[dict]:
    """Every full (not --quick) result line of the files, in file order."""
    rows = []
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from None
            row = checked(row, f"{path}:{number}", spread)
            if not row.get("quick", False):
                rows.append(row)
    return rows


def faulted(row: dict, limit: float | None) -> bool:
    """Whether either contender took more than ``limit`` minor page faults per iteration (lines
    from before bench_layers.py counted them pass)."""
    counts = (row.get("faults_per_iter") or 0, row.get("baseline_faults_per_iter") or 0)
    return limit is not None and max(counts) > limit


def span(values: list[float], digits: int = 2) -> str:
    """'0.99' for one value (or equal ones once rounded), '0.97–1.02' for several."""
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}–{high}"


def cell(rows: list[dict], same_work: bool, spread: bool = False) -> str:
    """The median (or the medians' range), with --spread the slowest and fastest repeat of them all
    in brackets, with --same-work the twin's ratio in parentheses."""
    if not rows:
        return ""
    text = span([r["ratio"] for r in rows])
    if spread:
        text += f" [{min(r['ratio_min'] for r in rows):.2f}–{max(r['ratio_max'] for r in rows):.2f}]"
    twins = [r["ratio_same_work"] for r in rows if r.get("ratio_same_work") is not None]
    return f"{text} ({span(twins)})" if same_work and twins else text


def baseline(row: dict) -> str:
    """The torch.nn class compared with, and the autocast both contenders ran under, if any."""
    autocast = row.get("autocast")
    return f"{row['baseline']}, {autocast} autocast" if autocast else row["baseline"]


def machine_line(rows: list[dict]) -> str:
    """Peak, threads, torch and allocator setting of the rows, each as a range or a set."""
    peaks = [r["peak_gflops"] for r in rows]
    peak = span(peaks, digits=1)
    by = ", ".join(sorted({r["peak_by"] for r in rows if "peak_by" in r}))  # older files lack it
    threads = ", ".join(sorted({str(r["threads"]) for r in rows}))
    torch_versions = ", ".join(sorted({r["torch"] for r in rows}))
    malloc = ", ".join(sorted({r.get("malloc", "default (not recorded)") for r in rows}))
    return (f"peak {peak} GFLOP/s{f' ({by})' if by else ''}, {threads} threads, torch {torch_versions}, "
            f"allocator {malloc}")


def benchmark_configs() -> list[str]:
    """The names in bench_layers.py's CONFIGS list, read from its source (importing it would need
    torch and rnnreg, which a summary does not)."""
    tree = ast.parse((Path(__file__).with_name("bench_layers.py")).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CONFIGS" for t in node.targets):
            return [call.args[0].value for call in node.value.elts]
    raise ValueError("bench_layers.py has no CONFIGS list")


def config_order(rows: list[dict]) -> list[str]:
    """bench_layers.py's order of the configurations measured; any it no longer has, after them."""
    seen = dict.fromkeys(r["config"] for r in rows)
    known = [name for name in benchmark_configs() if name in seen]
    return known + [c for c in seen if c not in known]


def table(rows: list[dict], same_work: bool = False, configs: list[str] | None = None,
          spread: bool = False) -> str:
    """The Markdown table: a row per configuration (in ``configs``' order, else bench_layers.py's),
    sizes as columns."""
    if not rows:
        raise ValueError("no full-size result lines in these files")
    sizes = [s for s in SIZES if any(r["size"] == s for r in rows)]
    configs = configs or config_order(rows)
    lines = [f"| config | baseline | {' | '.join(sizes)} |", "| --- | --- |" + " --- |" * len(sizes)]
    for config in configs:
        mine = [r for r in rows if r["config"] == config]
        cells = [cell([r for r in mine if r["size"] == s], same_work, spread) for s in sizes]
        against = ", ".join(dict.fromkeys(baseline(r) for r in mine))
        lines.append(f"| `{config}` | {against} | {' | '.join(cells)} |")
    return "\n".join(lines + ["", machine_line(rows)])


def select(rows: list[dict], configs: str | None, sizes: str | None, max_faults: float | None):
    """The rows asked for, the order of the configurations left in them (None: bench_layers.py's)
    and how many rows ``max_faults`` left out. A name no file has is an error, not an empty table."""
    for names, field in ((configs, "config"), (sizes, "size")):
        missing = [n for n in (names.split(",") if names else ()) if all(r[field] != n for r in rows)]
        if missing:
            raise ValueError(f"no {field} {', '.join(map(repr, missing))} in these files")
    order = configs.split(",") if configs else None
    rows = [r for r in rows if (not order or r["config"] in order)
            and (not sizes or r["size"] in sizes.split(","))]
    kept = [r for r in rows if not faulted(r, max_faults)]
    order = order and [c for c in order if any(r["config"] == c for r in kept)]
    return kept, order, len(rows) - len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="bench_layers.py JSON-lines results")
    parser.add_argument("--configs", help="comma-separated configurations to keep, in this order "
                                          "(default: all, in bench_layers.py's order)")
    parser.add_argument("--sizes", help=f"comma-separated sizes to keep, of {','.join(SIZES)} (default: all)")
    parser.add_argument("--same-work", action="store_true",
                        help="add the ratio to the same regularizers in plain PyTorch, in parentheses")
    parser.add_argument("--spread", action="store_true",
                        help="add the slowest and the fastest repeat's ratio, in brackets")
    parser.add_argument("--max-faults", type=float, metavar="N",
                        help="leave out lines where a contender took more than N minor page faults "
                             "per iteration (the allocator's noise, benchmarks/README.md)")
    args = parser.parse_args(argv)
    try:
        rows, order, dropped = select(read_rows(args.files, args.spread), args.configs, args.sizes,
                                      args.max_faults)
        text = table(rows, args.same_work, order, args.spread)
        if dropped:  # on the machine line, the table's last
            text += (f"; {dropped} line{'s' if dropped > 1 else ''} with more than "
                     f"{args.max_faults:g} minor page faults per iteration left out")
        print(text)
    except (OSError, ValueError) as err:
        print(f"summarize_layers.py: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
