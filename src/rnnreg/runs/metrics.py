"""The training run's metrics log (``metrics.jsonl``).

One JSON object per line, each with a ``kind`` ("step", "eval", "epoch", "event"). Lines are
flushed as they are written so a killed run loses at most its last, partial line.

Non-finite floats: strict JSON has no NaN or infinity, so they are written as the strings
``"nan"``, ``"inf"`` and ``"-inf"`` and :func:`read_metrics` turns those strings back into floats
(except under the free-text keys ``kind``, ``split`` and ``message``). A diverged loss therefore
stays visible in the log while every line remains valid JSON for other tools.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic_text import write_text_atomic

log = logging.getLogger(__name__)

_TEXT_KEYS = frozenset({"kind", "split", "message"})
_ENCODED = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class MetricsFormatError(ValueError):
    """A metrics.jsonl line other than the last one is not a JSON object."""


def _encode(value: Any) -> Any:
    # Make a record JSON-safe: tensors/numpy scalars -> Python numbers, non-finite -> strings.
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if not isinstance(value, (str, int, float, type(None))) and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _decode(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _decode(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, key) for v in value]
    if isinstance(value, str) and key not in _TEXT_KEYS and value in _ENCODED:
        return _ENCODED[value]
    return value


def _drop_partial_tail(path: Path) -> None:
    # A killed writer can leave a last line without its newline; appending after it would glue
    # the next record onto the fragment and corrupt a line in the middle of the log.
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    log.warning("%s: dropping a partial last line (%d bytes) left by an interrupted run",
                path, len(data) - keep)
    with open(path, "r+b") as f:
        f.truncate(keep)


class MetricsLog:
    """Append-only JSON-lines log of training records, flushed line by line.

    ``enabled=False`` makes every call a no-op and creates no file (e.g. non-primary processes).
    ``sinks`` receive each record after it is written (e.g. :class:`TensorBoardSink`).
    Usable as a context manager; :meth:`close` also closes the sinks.
    """

    def __init__(self, path: str | os.PathLike, *, enabled: bool = True,
                 sinks: Iterable[Any] = ()) -> None:
        self.path = Path(path)
        self.enabled = bool(enabled)
        self.sinks = list(sinks)
        self._file = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                _drop_partial_tail(self.path)
            self._file = open(self.path, "a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (a dict with a string ``kind``) as a JSON line and flush it."""
        if not isinstance(record, dict):
            raise TypeError(f"record must be a dict, got {type(record).__name__}")
        if not isinstance(record.get("kind"), str):
            raise ValueError(f"record must have a string 'kind', got {record.get('kind')!r}")
        if not self.enabled:
            return
        if self._file is None:
            raise ValueError(f"MetricsLog for {self.path} is closed")
        self._file.write(json.dumps(_encode(record), allow_nan=False) + "\n")
        self._file.flush()
        for sink in self.sinks:
            sink.write(record)

    def close(self) -> None:
        """Close the file and the sinks; further :meth:`log` calls raise."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a metrics.jsonl file into a list of records, decoding "nan"/"inf" back to floats.

    A last line that is not valid JSON (a run killed mid-write) is skipped with a warning; a bad
    line anywhere else raises :class:`MetricsFormatError`.
    """
    path = Path(path)
    lines = [(i, s) for i, s in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if s.strip()]
    records = []
    for pos, (number, text) in enumerate(lines):
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            if pos == len(lines) - 1:
                log.warning("%s:%d: skipping a truncated last line (%s)", path, number, err)
                break
            raise MetricsFormatError(f"{path}:{number}: bad metrics line: {err}") from None
        records.append(_decode(record))
    return records


def truncate_after(path: str | os.PathLike, step: int) -> int:
    """Drop records whose ``step`` exceeds ``step`` (resuming from a checkpoint taken there).

    The log then matches what an uninterrupted run had written at that step. Records without a
    step and a truncated last line are handled as in :func:`read_metrics`. The file is replaced
    atomically. Returns the number of records dropped; a missing file is left missing.
    """
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
    path = Path(path)
    if not path.exists():
        return 0
    records = read_metrics(path)
    kept = [r for r in records if not isinstance(r.get("step"), (int, float)) or r["step"] <= step]
    write_text_atomic(path, "".join(json.dumps(_encode(r), allow_nan=False) + "\n" for r in kept))
    return len(records) - len(kept)


class TensorBoardSink:
    """Mirror metrics records to TensorBoard as scalars (needs ``pip install tensorboard``).

    Tags: step records under ``train/`` (penalties under ``train/penalties/``), eval records
    under their split (``valid/``, ``test/``), epoch records under ``epoch/``; events as text.
    """

    _SKIP = frozenset({"kind", "step", "epoch", "time", "split", "averaged", "message"})

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError("TensorBoardSink needs the tensorboard package: "
                              "pip install tensorboard") from err
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, record: dict[str, Any]) -> None:
        """Write one metrics record's numeric fields at its ``step``."""
        kind, step = record.get("kind"), record.get("step")
        if kind == "event":
            self.writer.add_text("events", str(record.get("message", "")), step)
            return
        prefix = {"step": "train", "eval": record.get("split", "eval")}.get(kind, kind)
        for tag, value in self._scalars(record, prefix):
            self.writer.add_scalar(tag, value, step)

    def _scalars(self, record: dict[str, Any], prefix: str) -> list[tuple[str, float]]:
        out = []
        for key, value in record.items():
            if key in self._SKIP or value is None:
                continue
            if isinstance(value, dict):
                out += self._scalars(value, f"{prefix}/{key}")
            elif not isinstance(value, (bool, str)):
                out.append((f"{prefix}/{key}", float(value)))
        return out

    def close(self) -> None:
        """Flush and close the SummaryWriter."""
        self.writer.close()
