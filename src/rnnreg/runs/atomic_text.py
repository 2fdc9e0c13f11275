"""Replace a text file atomically: readers see the old file or the new one, never half of it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file in the same folder, fsync, and rename over ``path``.

    The file gets ``open()``'s permissions (0666 less the umask), like every other file of a run:
    ``tempfile.mkstemp`` would make it 0600, so config.toml and summary.json were private while
    metrics.jsonl and the checkpoints were not."""
    path = Path(path)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, uniquely named file beside ``path``, created with mode 0666 (the kernel applies the
    umask, as for open()); O_EXCL so that two writers never share one temp file."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:                       # 1 in 4 billion: draw another name
            continue
