"""``RUN/evaluations.json``: every ``rnnreg eval`` of a run, kept (a list of records, oldest first).

A record says what was scored and how: ``method`` ("plain", "cache", "dynamic", "mc"), its
``settings``, the ``split``, ``loss`` (nats per token or the task's loss) and the ``metric`` with its
value, the ``checkpoint`` ("best" / "last") and the training ``step`` it was saved at, the batch
size, any ``overrides``, when (``time``, UTC), how long (``wall_s``) and which ``rnnreg``.

Training never writes this file, so evaluating a run while it trains is safe: the checkpoints are
replaced atomically (a reader gets the old or the new one whole) and the run's lock
(:mod:`.lock`, held by the training process for the whole run) is not taken. Two evaluations
writing at once take turns on ``RUN/.evaluations.lock`` for the read-append-replace, and the file
is replaced atomically (:mod:`.atomic_text`): no record is lost, no reader sees half a file.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .atomic_text import write_text_atomic

try:
    import fcntl
except ImportError:                                    # Windows: no lock, as for runs (lock.py)
    fcntl = None

FILE_NAME, LOCK_NAME = "evaluations.json", ".evaluations.lock"
METHODS = ("plain", "cache", "dynamic", "mc")


class EvaluationsError(ValueError):
    """evaluations.json exists but is not a list of records: it is left alone, nothing appended."""


def evaluations_path(run_path: str | os.PathLike) -> Path:
    return Path(run_path) / FILE_NAME


def read_evaluations(run_path: str | os.PathLike) -> list[dict[str, Any]]:
    """The run's records, oldest first ([] when it has none); EvaluationsError if unreadable."""
    path = evaluations_path(run_path)
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise EvaluationsError(f"{path} is unreadable ({err}); move it away to record new evaluations") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise EvaluationsError(f"{path} is not a list of evaluation records; move it away to record new ones")
    return records


def append_evaluations(run_path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Add ``records`` after the run's earlier ones, keeping them all (see the module doc)."""
    with _turn(Path(run_path)):
        kept = read_evaluations(run_path) + list(records)
        # One record a line: a long file stays readable and a diff shows the records added.
        write_text_atomic(evaluations_path(run_path), "[\n" + ",\n".join(json.dumps(r) for r in kept) + "\n]\n")


def evaluation_record(*, method: str, split: str, metric: str, loss: float, value: float | None,
                      settings: dict[str, Any], checkpoint: str, step: int | None, batch_size: int | None,
                      overrides: tuple[str, ...] = (), wall_s: float = 0.0) -> dict[str, Any]:
    """One record (see the module doc); ``value``: the metric's value for ``loss``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    from .. import __version__

    return {"method": method, "settings": dict(settings), "split": split, "loss": loss, "metric": metric,
            metric: value, "checkpoint": checkpoint, "step": step, "batch_size": batch_size,
            "overrides": list(overrides), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_s": round(wall_s, 1), "rnnreg": __version__}


def latest_value(records: list[dict[str, Any]], method: str, split: str, metric: str,
                 best_step: int | None = None) -> float | None:
    """The metric of the last record of ``method`` on ``split`` scored from the best weights
    without overrides other than where the data lives (the weights the run's summary scores);
    with ``best_step`` (a finished run's summary says it), only a record of those very weights,
    not of the best of an earlier stop of a run that went on."""
    for record in reversed(records):
        same_data = all(str(o).startswith(("data.path=", "data.cache_dir=")) for o in record.get("overrides", []))
        same_weights = best_step is None or record.get("step") == best_step
        value = record.get(metric)
        if (record.get("method"), record.get("split"), record.get("checkpoint")) == (method, split, "best") \
                and same_data and same_weights and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def method_numbers(summary: dict[str, Any], records: list[dict[str, Any]],
                   metric: str | None) -> dict[str, tuple[float | None, float | None]]:
    """{method: (valid, test)} of the evaluation-time methods: the summary's ``valid_cache``,
    ``test_dynamic``, ... (the end of the run scored them), else the latest kept record."""
    out = {}
    for method in METHODS[1:]:
        pair = []
        for split in ("valid", "test"):
            value = summary.get(f"{split}_{method}")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                value = latest_value(records, method, split, metric, summary.get("best_step")) if metric else None
            pair.append(None if value is None else float(value))
        if pair != [None, None]:
            out[method] = (pair[0], pair[1])
    return out


@contextmanager
def _turn(run_path: Path) -> Iterator[None]:
    """Hold ``RUN/.evaluations.lock`` (waiting for another writer's few milliseconds)."""
    if fcntl is None:
        yield
        return
    fd = os.open(run_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                                   # closing drops the flock
