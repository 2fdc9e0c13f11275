"""Crash-safe, verified checkpoints that hold data only, never pickled code.

A payload is a dict of plain values (dict/OrderedDict, list, tuple, set, str, bytes, int, float,
complex, bool, None, torch.Size/dtype/device) and tensors: state dicts, ``rnnreg.training.rng.capture_rng()``,
counters, histories. It is read back with ``torch.load(weights_only=True)``, which refuses pickled
classes and functions; ``save_checkpoint`` checks the types first, so that a payload which could not
be loaded back never pushes a good checkpoint out to ``.prev``.

Format (``FORMAT_VERSION`` 2): the ``torch.save`` zip exactly as torch wrote it, except that the
zip's end-of-central-directory record gets a 44-byte comment ``TRAILER_MAGIC (8) | format_version
(u32 LE) | SHA-256 (32)``, the digest covering every byte before it. A zip comment is part of the
zip format, so plain ``torch.load(path, weights_only=True)`` (and ``zipfile``) read the file as
is, without rnnreg. The checksum exists because ``torch.load`` does not verify the zip CRCs: with
torch 2.13, about 95% of single-byte flips went unnoticed, e.g. a flip in tensor data loaded a
wrong value. Hashing the written bytes is simpler and more robust than hashing a canonical walk of
the payload, because it catches damage anywhere, zip metadata included; a truncated file has lost
its trailer. Files of format 1 (rnnreg 0.1: a 52-byte header ``MAGIC | version | body length |
SHA-256`` before the zip) are still read.

Writes are atomic: bytes go to ``<path>.tmp`` and are fsynced; then ``<path>`` is renamed to
``<path>.prev``, the temp file to ``<path>``, and the directory is fsynced. A crash at any point,
SIGKILL included, leaves a good checkpoint under ``<path>`` or ``<path>.prev``. A failed write (a
full disk, any OSError) removes the temp file and raises a one-line :class:`CheckpointError`; the
previous checkpoint is untouched. Files get ``open()``'s permissions (0666 less the umask), as
every other file of a run.
:func:`load_checkpoint` falls back to ``.prev`` if ``<path>`` is missing or damaged. The temp name
is fixed, not unique: a killed writer cannot clean up, and its single leftover is overwritten by
the next save. Concurrent writers to one path are unsupported; the checksum would catch the result.

``load_checkpoint`` returns the payload; ``load_checkpoint_with_source`` also returns the file read.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import logging
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

TRAILER_MAGIC = b"RNNRGCK\x02"
FORMAT_VERSION = 2
MAGIC = b"RNNRGCK\x00"  # format 1's header, read but no longer written
_LEGACY_HEADER = struct.Struct("<8sIQ32s")  # magic, format_version 1, body length, sha256
_TRAILER = struct.Struct("<8sI32s")  # the zip comment: magic, format_version, sha256
_EOCD = struct.Struct("<4s4H2IH")  # signature, disks, entries, cd size and offset, comment length
_TAIL = _EOCD.size + _TRAILER.size
_ZIP_MAGIC, _EOCD_SIG = b"PK\x03\x04", b"PK\x05\x06"
_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.nn.Parameter,
           torch.Size, torch.dtype, torch.device)


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one that could not be written: a one-line reason."""


class _Unusable(Exception):
    """One candidate file failed; the message is the reason, e.g. 'does not exist'."""


def prev_path(path: str | os.PathLike[str]) -> Path:
    """The fallback file that keeps the checkpoint ``path`` held before the last save."""
    path = _as_path(path)
    return path.with_name(path.name + ".prev")


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically, keeping the previous checkpoint as ``<path>.prev``.

    Raises :class:`CheckpointError` (one line) when the file cannot be written, a full disk
    included; the previous checkpoint is then left as it was.
    """
    path = _as_path(path)
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    _check_plain(payload, "payload")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    view = buffer.getbuffer()
    eocd = _EOCD.unpack(view[-_EOCD.size:])
    if eocd[0] != _EOCD_SIG or eocd[-1] != 0:
        raise RuntimeError("torch.save did not end its zip with a comment-free end-of-central-directory "
                           "record; this rnnreg cannot sign it")
    # The signed bytes: the zip up to its comment length, the new length, the trailer's start.
    zip_part = view[:-2]
    comment_start = struct.pack("<H", _TRAILER.size) + TRAILER_MAGIC + struct.pack("<I", FORMAT_VERSION)
    digest = hashlib.sha256(zip_part)
    digest.update(comment_start)
    _write_atomic(path, (zip_part, comment_start, digest.digest()), rotate=True,
                  kept="the previous checkpoint is kept")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes,
                       *, kept: str = "the previous file is kept") -> None:
    """Replace ``path`` by ``data`` as checkpoints are written (temp file, fsync, rename), without
    a ``.prev``; a failed write raises :class:`CheckpointError` saying ``kept``."""
    _write_atomic(_as_path(path), (data,), rotate=False, kept=kept)


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


def _write_atomic(path: Path, chunks: Iterable[bytes | memoryview], *, rotate: bool, kept: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        # open(), not mkstemp: mkstemp's 0600 would make this file unlike the run's other files.
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if rotate:
            _rotate(path)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)  # on a full disk this frees the space the partial file took
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            message = f"disk full while writing {path}: {kept}; free some space and try again"
        else:
            reason = str(err.strerror or err).replace("\n", " ")
            message = f"could not write {path} ({reason}): {kept}"
        raise CheckpointError(message) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _check_frame(head: bytes, tail: bytes, size: int) -> None:
    """Check the structure from the file's first and last bytes (no hashing)."""
    if head.startswith(MAGIC):
        _check_legacy_header(head, size)
        return
    if not head.startswith(_ZIP_MAGIC):
        if size < len(_ZIP_MAGIC) and _ZIP_MAGIC.startswith(head):
            raise _Unusable(f"is truncated ({size} bytes)")
        raise _Unusable("is corrupt or not an rnnreg checkpoint (bad magic bytes)")
    if size < len(_ZIP_MAGIC) + _TAIL:
        raise _Unusable(f"is truncated or corrupt ({size} bytes, too short for a checkpoint)")
    eocd, (magic, version, _) = _EOCD.unpack(tail[:_EOCD.size]), _TRAILER.unpack(tail[_EOCD.size:])
    if eocd[0] != _EOCD_SIG or eocd[-1] != _TRAILER.size or magic != TRAILER_MAGIC:
        raise _Unusable("is truncated or corrupt (its end is not an rnnreg checksum trailer)")
    if version != FORMAT_VERSION:
        raise _Unusable(f"is corrupt or from a newer rnnreg (format_version {version}, "
                        f"this one reads {FORMAT_VERSION})")


def _check_legacy_header(head: bytes, file_size: int) -> None:
    if len(head) < _LEGACY_HEADER.size:
        raise _Unusable(f"is truncated ({file_size} bytes, shorter than the "
                        f"{_LEGACY_HEADER.size}-byte header)")
    _, version, length, _ = _LEGACY_HEADER.unpack(head[:_LEGACY_HEADER.size])
    if version != 1:
        raise _Unusable(f"is corrupt (format_version {version} under the format 1 header)")
    if length != file_size - _LEGACY_HEADER.size:
        what = "truncated or corrupt" if file_size - _LEGACY_HEADER.size < length else "corrupt"
        raise _Unusable(f"is {what} (header declares {length} payload bytes, "
                        f"file holds {file_size - _LEGACY_HEADER.size})")


def _verified_body(data: bytes) -> memoryview:
    """The ``torch.save`` bytes of a checkpoint whose structure and SHA-256 are right."""
    _check_frame(data[:_LEGACY_HEADER.size], data[-_TAIL:], len(data))
    view = memoryview(data)
    if data.startswith(MAGIC):
        body = view[_LEGACY_HEADER.size:]
        digest = hashlib.sha256(struct.pack("<IQ", 1, len(body)))
        digest.update(body)
        expected = data[_LEGACY_HEADER.size - 32:_LEGACY_HEADER.size]
    else:
        body, digest, expected = view, hashlib.sha256(view[:-32]), data[-32:]
    if digest.digest() != expected:
        raise _Unusable("is truncated or corrupt (SHA-256 checksum mismatch)")
    return body


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Unusable("does not exist") from None
    except OSError as err:
        raise _Unusable(f"could not be read ({err.strerror or err})") from None
    body = _verified_body(data)
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
            size = os.fstat(f.fileno()).st_size
            head = f.read(_LEGACY_HEADER.size)
            f.seek(max(0, size - _TAIL))
            _check_frame(head, f.read(), size)
    except FileNotFoundError:
        return  # first save, or a crash between the two renames: .prev already holds the last one
    except _Unusable as err:
        # Rotating would overwrite the good .prev with a broken file. Only the frame is checked:
        # hashing the whole old file on every save would double the I/O.
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
