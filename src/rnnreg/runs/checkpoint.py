"""Crash-safe, verified checkpoints that hold data only, never pickled code.

A payload is a dict of plain values (dict/OrderedDict, list, tuple, set, str, bytes, int, float,
complex, bool, None, torch.Size/dtype/device) and tensors: state dicts, ``rnnreg.training.rng.capture_rng()``,
counters, histories. It is read back with ``torch.load(weights_only=True)``, which refuses pickled
classes and functions; ``save_checkpoint`` checks the types first, so that a payload which could not
be loaded back never pushes a good checkpoint out to ``.prev``.

Format (``FORMAT_VERSION`` 1): a 52-byte header ``MAGIC (8) | format_version (u32 LE) | body length
(u64 LE) | SHA-256 (32)`` over the version, length and body, then the ``torch.save`` bytes. The
framing exists because ``torch.load`` does not verify the zip CRCs. With torch 2.13, about 95% of
single-byte flips went unnoticed, e.g. a flip in tensor data loaded a wrong value. Hashing the
written bytes is simpler and more robust than hashing a canonical walk of the payload, because it
catches damage anywhere, zip metadata included. The length field tells truncation apart.

Writes are atomic: bytes go to ``<path>.tmp`` and are fsynced; then ``<path>`` is renamed to
``<path>.prev``, the temp file to ``<path>``, and the directory is fsynced. A crash at any point,
SIGKILL included, leaves a good checkpoint under ``<path>`` or ``<path>.prev``.
:func:`load_checkpoint` falls back to ``.prev`` if ``<path>`` is missing or damaged. The temp name
is fixed, not unique: a killed writer cannot clean up, and its single leftover is overwritten by
the next save. Concurrent writers to one path are unsupported; the checksum would catch the result.

``load_checkpoint`` returns the payload; ``load_checkpoint_with_source`` also returns the file read.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import os
import re
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

MAGIC = b"RNNRGCK\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")  # magic, format_version, body length, sha256
_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.nn.Parameter,
           torch.Size, torch.dtype, torch.device)


class CheckpointError(RuntimeError):
    """No usable checkpoint: the message says which files were tried and why each failed."""


class _Unusable(Exception):
    """One candidate file failed; the message is the reason, e.g. 'does not exist'."""


def prev_path(path: str | os.PathLike[str]) -> Path:
    """The fallback file that keeps the checkpoint ``path`` held before the last save."""
    path = _as_path(path)
    return path.with_name(path.name + ".prev")


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically, keeping the previous checkpoint as ``<path>.prev``."""
    path = _as_path(path)
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    _check_plain(payload, "payload")
    body = io.BytesIO()
    torch.save(payload, body)
    view = body.getbuffer()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(MAGIC, FORMAT_VERSION, len(view), _digest(len(view), view)))
            f.write(view)
            f.flush()
            os.fsync(f.fileno())
        _rotate(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and verify ``path``, falling back to ``<path>.prev`` with a warning if it is unusable.

    Raises :class:`CheckpointError` when neither file holds a good checkpoint.
    """
    return load_checkpoint_with_source(path, map_location=map_location)[0]


def load_checkpoint_with_source(path: str | os.PathLike[str], *,
                                map_location: Any = "cpu") -> tuple[dict[str, Any], Path]:
    """Like :func:`load_checkpoint`, also returning the file actually read (``path`` or ``.prev``)."""
    path = _as_path(path)
    failures = []
    for candidate in (path, prev_path(path)):
        try:
            payload = _read(candidate, map_location)
        except _Unusable as err:
            failures.append(f"{candidate} {err}")
            continue
        if failures:
            logger.warning("%s; falling back to %s", failures[0], candidate)
        return payload, candidate
    raise CheckpointError("no usable checkpoint: " + "; ".join(failures))


def move_to_cpu(obj: Any) -> Any:
    """Copy of ``obj`` with every tensor moved to the CPU, recursing into dicts, lists and tuples.

    Dicts are shallow-copied, which keeps their type and attributes, notably the ``_metadata``
    that ``state_dict()`` attaches and ``load_state_dict`` reads module versions from.
    """
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        out = copy.copy(obj)
        for key, value in out.items():
            out[key] = move_to_cpu(value)
        return out
    if isinstance(obj, (list, tuple)):
        items = [move_to_cpu(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)  # namedtuple
    return obj


def _as_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _check_plain(obj: Any, where: str) -> None:
    # Exact types, not isinstance: a subclass (IntEnum, numpy.float64, namedtuple, defaultdict)
    # pickles a reference to its class, which weights_only=True then refuses.
    kind = type(obj)
    if kind in (dict, OrderedDict):
        for key, value in obj.items():
            _check_plain(key, f"key {key!r} of {where}")
            _check_plain(value, f"{where}[{key!r}]")
    elif kind in (list, tuple, set):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif kind not in _LEAVES:
        raise TypeError(f"{where} has type {kind.__module__}.{kind.__qualname__}; checkpoints hold "
                        "only plain values (dict, list, tuple, str, int, float, bool, None) and tensors")


def _digest(length: int, body: bytes | memoryview) -> bytes:
    h = hashlib.sha256(struct.pack("<IQ", FORMAT_VERSION, length))
    h.update(body)
    return h.digest()


def _check_header(head: bytes, file_size: int) -> tuple[int, bytes]:
    """Check magic, version and length from the file's first bytes; returns (length, digest)."""
    if len(head) < _HEADER.size:
        raise _Unusable(f"is truncated ({file_size} bytes, shorter than the {_HEADER.size}-byte header)")
    magic, version, length, digest = _HEADER.unpack(head[:_HEADER.size])
    if magic != MAGIC:
        raise _Unusable("is corrupt or not an rnnreg checkpoint (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise _Unusable(f"is corrupt or from a newer rnnreg (format_version {version}, "
                        f"this one reads {FORMAT_VERSION})")
    if length != file_size - _HEADER.size:
        what = "truncated or corrupt" if file_size - _HEADER.size < length else "corrupt"
        raise _Unusable(f"is {what} (header declares {length} payload bytes, "
                        f"file holds {file_size - _HEADER.size})")
    return length, digest


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Unusable("does not exist") from None
    except OSError as err:
        raise _Unusable(f"could not be read ({err.strerror or err})") from None
    length, digest = _check_header(data, len(data))
    body = memoryview(data)[_HEADER.size:]
    if _digest(length, body) != digest:
        raise _Unusable("is truncated or corrupt (SHA-256 checksum mismatch)")
    try:
        payload = torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - past the checksum: refused globals or foreign bytes
        raise _Unusable(f"could not be loaded with weights_only=True ({_load_reason(err)})") from None
    if not isinstance(payload, dict):
        raise _Unusable(f"holds a {type(payload).__name__}, not a dict payload")
    return payload


def _load_reason(err: Exception) -> str:
    # torch's weights_only message spans many lines; keep the sentence naming the refused global.
    found = re.search(r"WeightsUnpickler error: (.*?)(?:\. |$)", str(err), re.MULTILINE)
    first = (str(err).splitlines() or [""])[0]
    return found.group(1) if found else f"{type(err).__name__}: {first}"


def _rotate(path: Path) -> None:
    """Move the current checkpoint to ``.prev``, unless it is structurally broken."""
    try:
        with open(path, "rb") as f:
            _check_header(f.read(_HEADER.size), os.fstat(f.fileno()).st_size)
    except FileNotFoundError:
        return  # first save, or a crash between the two renames: .prev already holds the last one
    except _Unusable as err:
        # Rotating would overwrite the good .prev with a broken file. Only header and size are
        # checked: hashing the whole old file on every save would double the I/O.
        logger.warning("existing %s %s; keeping %s instead of replacing it", path, err, prev_path(path))
        return
    os.replace(path, prev_path(path))


def _fsync_dir(directory: Path) -> None:
    # Makes the renames durable across power loss. Windows cannot open a directory to fsync it.
    if os.name == "posix":
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
