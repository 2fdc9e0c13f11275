"""Irregular multivariate series from CSV files in LONG format: one row per (series, timestamp).

Format (UTF-8, comma-separated, one header row)::

    id,time,<feature columns...>[,label]
    p001,0.0,7.4,,120
    p001,0.5,,36.6,

- ``id``: the series a row belongs to (any text). ``time``: a finite number, strictly increasing
  over the rows of one id in file order (rows of different ids may interleave).
- feature columns: numbers; an empty cell or ``NaN`` (any case) is a missing value.
- ``label`` (optional): an integer class, the same on every row of an id where it is given (cells
  may be left empty on all but one row). Without it, a labels file ``id,label`` (one row per id)
  must be given instead; having both is an error, since they could disagree.

Any problem raises :class:`DataError` naming the file and line. Series are returned padded to the
longest in the layout of :class:`IrregularSeries` (values (T, N, D) with NaN, times (T, N),
lengths (N,)), in the order their ids first appear.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import torch

from .errors import DataError
from .missing_values import IrregularSeries

log = logging.getLogger(__name__)
SPLIT_FILES = ("train", "valid", "test")


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for each non-blank row, the header included."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    yield reader.line_num, [cell.strip() for cell in cells]
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a UTF-8 CSV file ({error})") from error


def _number(cell: str, where: str, *, missing_ok: bool) -> float:
    if missing_ok and (cell == "" or cell.lower() == "nan"):
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{where}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {cell!r} must be finite (leave the cell empty for a missing value)")
    return value


def _integer(cell: str, where: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise DataError(f"{where}: label {cell!r} is not an integer") from None


def _header(path: Path, cells: list[str], line: int, label_column: str) -> tuple[list[str], bool]:
    """The feature column names and whether a label column is present; checks the header."""
    if len(set(cells)) != len(cells):
        raise DataError(f"{path}:{line}: duplicate column names in the header {cells}")
    if cells[:2] != ["id", "time"]:
        raise DataError(f"{path}:{line}: the header must start with 'id,time', got {','.join(cells[:2])!r}")
    has_label = label_column in cells
    if has_label and cells[-1] != label_column:
        raise DataError(f"{path}:{line}: the {label_column!r} column must come last")
    features = cells[2:-1] if has_label else cells[2:]
    if not features:
        raise DataError(f"{path}:{line}: no feature columns after 'id,time'")
    return features, has_label


def read_irregular_csv(path: str | Path, *, labels_path: str | Path | None = None,
                       label_column: str = "label") -> IrregularSeries:
    """Read a long-format CSV (see the module docstring) into padded :class:`IrregularSeries`.

    labels_path: a CSV ``id,label`` giving each series' label, for data files without a label column.
    """
    path = Path(path)
    rows = _rows(path)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: empty file")
    features, has_label = _header(path, first[1], first[0], label_column)
    if has_label and labels_path is not None:
        raise DataError(f"{path}: has a {label_column!r} column and a labels file was given too; use one")
    width = 2 + len(features) + has_label
    series: dict[str, dict] = {}
    for line, cells in rows:
        where = f"{path}:{line}"
        if len(cells) != width:
            raise DataError(f"{where}: {len(cells)} cells, the header has {width}")
        ident = cells[0]
        if not ident:
            raise DataError(f"{where}: empty id")
        entry = series.setdefault(ident, {"times": [], "values": [], "label": None})
        time = _number(cells[1], f"{where}: time", missing_ok=False)
        if entry["times"] and time <= entry["times"][-1]:
            raise DataError(f"{where}: time {time} of id {ident!r} is not after its previous time "
                            f"{entry['times'][-1]} (rows of one id must be sorted by time)")
        entry["times"].append(time)
        entry["values"].append([_number(c, f"{where}: column {n!r}", missing_ok=True)
                                for n, c in zip(features, cells[2:2 + len(features)])])
        if has_label and cells[-1]:
            label = _integer(cells[-1], where)
            if entry["label"] is not None and label != entry["label"]:
                raise DataError(f"{where}: label {label} of id {ident!r} differs from its earlier {entry['label']}")
            entry["label"] = label
    if not series:
        raise DataError(f"{path}: no data rows after the header")
    labels = (read_labels(labels_path) if labels_path is not None else
              {k: v["label"] for k, v in series.items()} if has_label else None)
    if labels is None:
        raise DataError(f"{path}: no {label_column!r} column and no labels file")
    return _pad(path, series, labels, features)


def read_labels(path: str | Path) -> dict[str, int]:
    """A labels file: header ``id,label``, then one row per series."""
    path, labels = Path(path), {}
    rows = _rows(path)
    first = next(rows, None)
    if first is None or first[1] != ["id", "label"]:
        raise DataError(f"{path}:1: a labels file must start with the header 'id,label'")
    for line, cells in rows:
        if len(cells) != 2:
            raise DataError(f"{path}:{line}: {len(cells)} cells, expected 2 (id,label)")
        if cells[0] in labels:
            raise DataError(f"{path}:{line}: id {cells[0]!r} appears twice")
        labels[cells[0]] = _integer(cells[1], f"{path}:{line}")
    return labels


def _pad(path: Path, series: dict[str, dict], labels: dict[str, int | None], features: list[str]) -> IrregularSeries:
    unlabelled = [k for k in series if labels.get(k) is None]
    if unlabelled:
        raise DataError(f"{path}: no label for {len(unlabelled)} series, e.g. id {unlabelled[0]!r}")
    extra = set(labels) - set(series)
    if extra:
        log.warning("%s: %d labelled ids have no rows and are ignored", path, len(extra))
    lengths = torch.tensor([len(v["times"]) for v in series.values()])
    steps, count = int(lengths.max()), len(series)
    values = torch.full((steps, count, len(features)), math.nan)  # (T, N, D)
    times = torch.zeros(steps, count)  # (T, N)
    for n, entry in enumerate(series.values()):
        length = len(entry["times"])
        values[:length, n] = torch.tensor(entry["values"])  # (T_n, D)
        times[:length, n] = torch.tensor(entry["times"])
        times[length:, n] = entry["times"][-1]  # padding repeats the last timestamp (zero gaps)
    label_tensor = torch.tensor([labels[k] for k in series])
    return IrregularSeries(values, times, lengths, label_tensor, tuple(series), tuple(features))


def read_irregular_folder(folder: str | Path) -> dict[str, IrregularSeries]:
    """``train.csv``, ``valid.csv`` and ``test.csv`` from ``folder`` (each with a label column or a
    ``<split>_labels.csv`` next to it), checked to share their feature columns."""
    folder = Path(folder)
    splits = {}
    for split in SPLIT_FILES:
        data, labels = folder / f"{split}.csv", folder / f"{split}_labels.csv"
        if not data.is_file():
            raise DataError(f"{folder}: missing {data.name} (a folder needs train.csv, valid.csv and test.csv)")
        splits[split] = read_irregular_csv(data, labels_path=labels if labels.is_file() else None)
    names = splits["train"].feature_names
    for split in SPLIT_FILES[1:]:
        if splits[split].feature_names != names:
            raise DataError(f"{folder / (split + '.csv')}: feature columns differ from train.csv's")
    return splits
