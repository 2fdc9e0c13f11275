"""Compare finished runs with the published numbers they reproduce, as a text or Markdown table.

A run directory holds ``summary.json`` (our valid/test metric, status, epochs, provenance) and
``config.toml`` (preset ``name`` and ``[expect]``: the metric and the paper ``references``).

Each run gets a verdict from its provenance (``runs/provenance.py``): a **reproduction** ran its
preset's config (apart from where data and outputs live and the hardware) for the preset's full
schedule; a **modified** run changed settings (named); a **partial** one was cut short (a budget,
a stop, a failure, or fewer epochs); a **scaled** one changed only its size or epoch count
(:data:`SCALE_KEYS`, values named). Only a reproduction's differences from the paper are shown;
runs written before provenance was recorded are **unverified** (their differences are shown). A
reference that ``needs`` what rnnreg lacks (zoneout-pmnist's recurrent batch normalization) is
shown with what it needs and never gets a difference.

A reference's ``method`` says how its numbers were evaluated: "plain", or an evaluation-time
method ("cache": continuous cache pointer, "dynamic": dynamic evaluation, "mc": MC dropout). A
method's reference stands beside the run's numbers of that method, on a line of its own that
repeats them, its source marked ``[cache]``: from summary.json (``valid_cache``, ``test_cache``,
... written at the end of the run) or else the latest ``rnnreg eval`` of the best weights in
evaluations.json (:mod:`.evaluations`); never beside the plain numbers. The verdict is the run's;
numbers from a later ``rnnreg eval`` (whose settings may not be the preset's ``[evaluation]``)
are marked ``rnnreg eval`` and get no difference.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.schema import ConfigError, Reference
from .evaluations import EvaluationsError, method_numbers, read_evaluations

log = logging.getLogger(__name__)

_RUN_FILES = ("summary.json", "config.toml", "metrics.jsonl")
_HEADER = ("run", "preset", "metric", "ours valid", "ours test", "paper valid", "paper test",
           "diff valid", "diff test", "status", "verdict", "epochs", "reference")
_TEXT_COLUMNS = frozenset({0, 1, 2, 9, 10, 12})  # left-aligned; the rest are numbers


class NoRunsFolder(ValueError):
    """The folder to report on is missing or is not a folder."""


@dataclass(frozen=True)
class RunRow:
    """One run's results and references; ``note`` is set (and the numbers absent) if skipped."""

    run: str
    path: Path
    preset: str
    metric: str | None = None
    valid: float | None = None
    test: float | None = None
    status: str = ""
    epochs: int | None = None
    references: tuple[Reference, ...] = ()
    note: str | None = None
    verdict: str = "unverified"
    methods: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # (valid, test)
    scored_at_end: frozenset[str] = frozenset()  # methods whose numbers the run's own end scored

    @property
    def comparable(self) -> bool:
        """Our numbers may stand beside the paper's: a reproduction, or a run that cannot tell."""
        return self.verdict in ("reproduction", "unverified")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        log.warning("%s: unreadable config, no references used (%s)", path, err)
        return {}


def _references(expect: dict[str, Any]) -> tuple[Reference, ...]:
    out = []
    for r in expect.get("references") or []:
        if not isinstance(r, dict):
            continue
        try:
            out.append(Reference(str(r.get("source", "?")), _number(r.get("valid")), _number(r.get("test")),
                                 str(r.get("method", "plain")), str(r.get("needs", ""))))
        except ConfigError as err:      # a method this rnnreg does not know: nothing to set it beside
            log.warning("reference %r left out: %s", r.get("source"), err)
    return tuple(out)


def _method_numbers(run_dir: Path, summary: dict[str, Any], metric: Any) -> dict:
    try:
        records = read_evaluations(run_dir)
    except EvaluationsError as err:
        log.warning("%s", err)
        records = []
    return method_numbers(summary, records, metric if isinstance(metric, str) else None)


def _read_run(run_dir: Path) -> RunRow:
    config = _read_config(run_dir / "config.toml")
    expect = config.get("expect") or {}
    base = dict(run=run_dir.name, path=run_dir, preset=str(config.get("name", run_dir.name)),
                metric=expect.get("metric"), references=_references(expect))
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        return RunRow(**base, note="no summary.json (not started, or killed before writing it)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError as err:
        return RunRow(**base, note=f"unreadable summary.json ({err})")
    base["preset"] = str(summary.get("name", base["preset"]))
    base["metric"] = summary.get("metric", base["metric"])
    epochs = summary.get("epochs")
    status = str(summary.get("status", ""))
    return RunRow(**base, valid=_number(summary.get("valid")), test=_number(summary.get("test")),
                  status=status, epochs=epochs if isinstance(epochs, int) else None,
                  verdict=verdict(summary.get("provenance"), status),
                  methods=_method_numbers(run_dir, summary, base["metric"]),
                  scored_at_end=frozenset(m for m in ("cache", "dynamic", "mc")
                                          if _number(summary.get(f"test_{m}")) is not None
                                          or _number(summary.get(f"valid_{m}")) is not None))


# Settings that scale a preset down (or up) without changing its method: a run that changed only
# these is "scaled", named with the values, and its own schedule is not "partial".
SCALE_KEYS = frozenset({"model.hidden_size", "model.hidden_sizes", "model.embedding_size",
                        "model.num_layers", "train.epochs"})


def verdict(provenance: Any, status: str) -> str:
    """"reproduction", "scaled: KEY OLD -> NEW, ...", "modified: KEYS", "partial: WHY" (with one
    of the two before it when both), or "unverified" (no provenance: a summary from before rnnreg
    recorded it)."""
    if not isinstance(provenance, dict):
        return "unverified"
    diff = provenance.get("config_diff")
    parts = []
    if provenance.get("preset") is None or not isinstance(diff, dict):
        parts.append("modified: not a preset")
    elif diff and set(diff) <= SCALE_KEYS:
        parts.append("scaled: " + ", ".join(f"{key} {diff[key]}" for key in sorted(diff)))
    elif diff:
        parts.append("modified: " + ", ".join(sorted(diff)))
    # A run that set its own train.epochs and finished them, with no budget or signal, ran its
    # own schedule: the changed key is named above, and it is not also "partial".
    own_schedule = (isinstance(diff, dict) and "train.epochs" in diff and status == "finished"
                    and provenance.get("stopped_by") is None)
    if not provenance.get("full_schedule") and not own_schedule:
        why = provenance.get("stopped_by") or (status if status != "finished" else None)
        if why is None and provenance.get("preset_epochs") is not None:
            why = f"{provenance.get('epochs')} of {provenance['preset_epochs']} epochs"
        parts.append(f"partial: {why}" if why else "partial")
    return "; ".join(parts) or "reproduction"


def collect_runs(root: str | os.PathLike) -> list[RunRow]:
    """Read every run under ``root``: its subdirectories that look like runs, and ``root`` itself.

    A directory is a run if it holds summary.json, config.toml or metrics.jsonl; runs without a
    (readable) summary.json are returned with ``note`` set so the report can say why they are
    missing. Sorted by directory name.
    """
    root = Path(root)
    if not root.exists():
        raise NoRunsFolder(f"no folder {str(root)!r}: the report reads the runs `rnnreg train` writes there "
                           "(none yet?); name the folder of your runs: rnnreg report DIR")
    if not root.is_dir():
        raise NoRunsFolder(f"{str(root)!r} is a file; the report reads a folder of runs, or one run's folder")
    dirs = [root] + sorted(d for d in root.iterdir() if d.is_dir())
    return [_read_run(d) for d in dirs if any((d / f).exists() for f in _RUN_FILES)]


def _fmt(value: float | None, metric: str | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if metric in ("mse", "nmse"):  # errors that span orders of magnitude: significant digits
        return f"{value:+.3g}" if signed else f"{value:.3g}"
    digits = 3 if metric == "bpc" else 2  # bpc differences matter in the 3rd decimal
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _diff(ours: float | None, paper: float | None) -> float | None:
    return None if ours is None or paper is None else ours - paper


def _run_lines(row: RunRow) -> list[tuple[str, ...]]:
    """The run's first line: its plain numbers (with the first plain reference); then a line per
    further plain reference (our numbers not repeated), then one per method reference, each with
    our numbers of that method."""
    m = row.metric
    tail = (row.status or "-", row.verdict, "-" if row.epochs is None else str(row.epochs))
    plain = [ref for ref in row.references if ref.method == "plain"]
    methods = [ref for ref in row.references if ref.method != "plain"]
    lines = [(row.run, row.preset, m or "-", _fmt(row.valid, m), _fmt(row.test, m),
              *(_paper(row, plain[0], row.valid, row.test) if plain else ("-",) * 4), *tail,
              _source(plain[0]) if plain else "-")]
    lines += [("",) * 5 + _paper(row, ref, row.valid, row.test) + ("", "", "", _source(ref)) for ref in plain[1:]]
    for ref in methods:
        valid, test = row.methods.get(ref.method, (None, None))
        # Numbers from a later `rnnreg eval` may use other settings than the preset's
        # [evaluation]: shown, but set beside the paper without a difference.
        at_end = ref.method in row.scored_at_end or ref.method not in row.methods
        lines.append(("", "", "", _fmt(valid, m), _fmt(test, m), *_paper(row, ref, valid, test, at_end), "", "", "",
                      f"{_source(ref)} [{ref.method}{'' if at_end else ', rnnreg eval'}]"))
    return lines


def _source(ref: Reference) -> str:
    """The reference's source; one that needs what rnnreg lacks says so (and gets no difference)."""
    return f"{ref.source} (needs {ref.needs}: not in rnnreg, not comparable)" if ref.needs else ref.source


def _paper(row: RunRow, ref: Reference, valid: float | None, test: float | None,
           comparable: bool = True) -> tuple[str, ...]:
    """The paper's valid and test, and ours minus them: only for a run comparable with the paper
    (a modified or partial run is another experiment) and numbers it scored itself."""
    m = row.metric
    diffs = ((_fmt(_diff(valid, ref.valid), m, True), _fmt(_diff(test, ref.test), m, True))
             if row.comparable and comparable and not ref.needs else ("-", "-"))
    return (_fmt(ref.valid, m), _fmt(ref.test, m), *diffs)


def _plain(lines: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(line[c]) for line in lines) for c in range(len(_HEADER))]
    out = []
    for n, line in enumerate(lines):
        cells = [cell.ljust(w) if c in _TEXT_COLUMNS else cell.rjust(w)
                 for c, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _markdown(lines: list[tuple[str, ...]]) -> list[str]:
    rule = tuple(":--" if c in _TEXT_COLUMNS else "--:" for c in range(len(_HEADER)))
    rows = [lines[0], rule, *lines[1:]]
    return ["| " + " | ".join(cell.replace("|", r"\|") for cell in row) + " |" for row in rows]


def format_report(rows: list[RunRow], markdown: bool = False) -> str:
    """Format runs as an aligned plain-text table, or a Markdown table if ``markdown``.

    One line per paper reference (the run's first line carries our plain numbers, status, verdict
    and epochs; a method's reference line our numbers of that method); ``diff`` is ours minus the
    reference, for reproductions and unverified runs only. Runs of one preset are listed together;
    runs with a ``note`` are left out of the table and listed below it.
    """
    if not all(isinstance(r, RunRow) for r in rows):
        raise TypeError("rows must be a list of RunRow (see collect_runs)")
    shown = sorted((r for r in rows if r.note is None), key=lambda r: (r.preset, r.run))
    lines = [_HEADER] + [line for row in shown for line in _run_lines(row)]
    table = (_markdown if markdown else _plain)(lines) if shown else ["no finished runs"]
    notes = [f"note: {r.run} skipped: {r.note}" for r in rows if r.note is not None]
    return "\n".join(table + ([""] + notes if notes else [])) + "\n"
