"""Copying chosen members out of a downloaded zip or tar archive.

Only the named members are read and each is written under a name the caller chooses, so an
archive's own paths (``../`` or absolute ones included) never decide where anything is written.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import IO

from .errors import DataError


def _normal(name: str) -> str:
    """Member names compare without a leading ``./`` (Mikolov's tgz has one, zips do not)."""
    return name.removeprefix("./")


def extract_members(archive: str | Path, members: dict[str, Path]) -> list[Path]:
    """Copy each ``member -> destination`` of ``members`` out of ``archive``.

    Args:
        archive: a ``.zip`` or a tar file (``.tgz``, ``.tar.gz``, ``.tar``).
        members: member path inside the archive -> the file to write.

    Returns:
        The destination paths, in the order of ``members``.

    Raises:
        DataError: the archive is unreadable or lacks a member.
    """
    archive = Path(archive)
    wanted = {_normal(name): Path(dest) for name, dest in members.items()}
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _copy_all(archive, wanted, {_normal(n): n for n in zf.namelist()}, zf.open)
        else:
            with tarfile.open(archive, "r:*") as tf:
                found = {_normal(m.name): m for m in tf.getmembers() if m.isfile()}
                _copy_all(archive, wanted, found, tf.extractfile)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{archive} is not a readable zip or tar archive ({err})") from err
    return list(wanted.values())


def _copy_all(archive: Path, wanted: dict[str, Path], found: dict, open_member) -> None:
    missing = [name for name in wanted if name not in found]
    if missing:
        listing = ", ".join(sorted(found)[:8]) + (", ..." if len(found) > 8 else "")
        raise DataError(f"{archive} has no member {missing[0]} (it holds: {listing or 'nothing'})")
    for name, dest in wanted.items():
        with open_member(found[name]) as source:
            _write_atomically(source, dest)


def _write_atomically(source: IO[bytes], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
