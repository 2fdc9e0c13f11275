"""Reading one corpus file into a string, refusing files that are not text.

Errors are :class:`DataError` with a one-line message naming the file, so a user pointing
``data.path`` at the wrong folder sees which file is wrong and why, instead of a traceback from the
tokenizer or a vocabulary of binary garbage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from .errors import DataError

ENCODINGS = ("utf-8", "latin-1")
SCAN = 16 << 20  # bytes read at a time when scanning a file


def open_text_file(path: str | Path) -> BinaryIO:
    """``path`` opened for reading bytes, refused as :func:`read_text` refuses it.

    Raises:
        DataError: the file is missing, a folder, unreadable or empty.
    """
    path = Path(path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, expected a text file") from None
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror or err})") from None
    if os.fstat(f.fileno()).st_size == 0:
        f.close()
        raise DataError(f"{path} is empty")
    return f


def first_nul(f: BinaryIO, start: int = 0) -> int | None:
    """The offset of the first NUL byte of ``f`` at or after ``start`` (None if there is none);
    moves the file position."""
    f.seek(start)
    offset = start
    while block := f.read(SCAN):
        found = block.find(b"\x00")
        if found >= 0:
            return offset + found
        offset += len(block)
    return None


def read_text(path: str | Path, *, encoding: str = "utf-8") -> str:
    """The text of ``path``.

    Args:
        path: a text file.
        encoding: ``"utf-8"`` for text corpora; ``"latin-1"`` for byte-level corpora (enwik8),
            which maps every byte to one character so each byte becomes one symbol.

    Raises:
        DataError: the file is missing, a folder, unreadable, empty, binary or not UTF-8.
    """
    path = Path(path)
    with open_text_file(path) as f:
        try:
            raw = f.read()
        except OSError as err:
            raise DataError(f"cannot read {path} ({err.strerror or err})") from None
    return decode_text(raw, str(path), encoding=encoding)


def decode_text(raw: bytes, source: str, *, encoding: str = "utf-8") -> str:
    """Decode the bytes of a corpus file; ``source`` names it in error messages.

    UTF-8 text must hold no NUL byte (a sure sign of a binary file) and may start with a byte
    order mark, which is dropped so it does not glue itself to the first token.
    ``latin-1`` accepts every byte, NUL included: a byte-level corpus may hold any byte.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
    if not raw:
        raise DataError(f"{source} is empty")
    if encoding == "latin-1":
        return raw.decode("latin-1")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{source} looks like binary data (NUL byte at offset {nul}), not text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{source} is not valid UTF-8 (bad byte at offset {err.start}); "
                        f"convert it to UTF-8") from None
    return text.removeprefix("\ufeff")
