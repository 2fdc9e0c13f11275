"""Character-level ids straight from a file's bytes, for files whose every byte is one symbol.

enwik8 is read as latin-1, so each byte is a symbol; text8 is ASCII, where each byte is one
character too. Their 10^8 symbols need no Python string: blocks of bytes go through a 256-entry
lookup table (byte -> id) to int64 ids. The result is exactly
:func:`~rnnreg.data.tokenize.encode_chars` of the decoded text: the vocabulary holds the symbols
as one-character strings in first-seen order. A UTF-8 file with any byte >= 0x80 (a byte order
mark included) is not one symbol per byte: :func:`bytes_are_symbols` says so and the caller
decodes it instead.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from .errors import DataError
from .textfile import ENCODINGS, SCAN, open_text_file
from .word_stream import MISSING, StreamStats

BLOCK = 1 << 20  # bytes per block: its int32 indices and int64 ids take 12 times this


def bytes_are_symbols(path: str | Path, encoding: str) -> bool:
    """Whether each byte of ``path`` is one character when decoded with ``encoding``.

    Raises:
        DataError: the file is missing, empty or unreadable, or (UTF-8) holds a NUL byte.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
    with open_text_file(path) as f:
        if encoding == "latin-1":
            return True
        offset = 0
        while block := f.read(SCAN):
            nul = block.find(b"\x00")
            if nul >= 0:
                raise DataError(f"{path} looks like binary data (NUL byte at offset {offset + nul}), "
                                f"not text")
            if not block.isascii():
                return False
            offset += len(block)
    return True


def byte_ids(path: str | Path, start: int, stop: int, stoi: dict[str, int], *, grow: bool,
             unknown_id: int = MISSING, stats: StreamStats | None = None) -> Iterator[array]:
    """The ids of bytes ``[start, stop)`` of ``path`` as int64 ``array('q')`` blocks.

    Args:
        path: a file that :func:`bytes_are_symbols` accepted.
        start, stop: the byte range (a split of a single-file corpus, or the whole file).
        stoi: symbol -> id; with ``grow`` new symbols are added in first-seen order.
        grow: whether new symbols join ``stoi`` (the training split).
        unknown_id: the id of a symbol missing from ``stoi`` when not ``grow``.
        stats: ``ids`` and ``unknown`` are counted into it.

    Raises:
        DataError: the file is shorter than ``stop``.
    """
    stats = stats if stats is not None else StreamStats()
    buffer = bytearray(min(BLOCK, max(stop - start, 1)))
    table = _table(stoi)
    with open_text_file(path) as f:
        f.seek(start)
        while start < stop:
            got = f.readinto(memoryview(buffer)[: min(len(buffer), stop - start)])
            if not got:
                raise DataError(f"{path} ended at byte {start}, expected {stop} bytes")
            start += got
            ids, table = _encode_block(buffer, got, table, stoi, grow, unknown_id, stats)
            stats.ids += got
            yield ids


def _encode_block(buffer: bytearray, got: int, table: Tensor, stoi: dict[str, int], grow: bool,
                  unknown_id: int, stats: StreamStats) -> tuple[array, Tensor]:
    """The ids of ``buffer[:got]``, and the table, grown if the block brought new symbols."""
    codes = torch.frombuffer(buffer, dtype=torch.uint8)[:got]  # (got,) shares the buffer
    ids = array("q", [0]) * got
    view = torch.frombuffer(ids, dtype=torch.long)  # (got,) the array's memory
    index = codes.to(torch.int32)
    torch.index_select(table, 0, index, out=view)
    if int(view.min()) == MISSING:  # symbols the table lacks: rare after the first blocks
        missing = view == MISSING
        if grow:
            _add_new_symbols(buffer, got, codes[missing], stoi)
            table = _table(stoi)
            torch.index_select(table, 0, index, out=view)
        else:
            view.masked_fill_(missing, unknown_id)
            stats.unknown += int(missing.sum())
    return ids, table


def _table(stoi: dict[str, int]) -> Tensor:
    """(256,) int64: the id of each byte's symbol, ``MISSING`` where ``stoi`` lacks it."""
    table = torch.full((256,), MISSING, dtype=torch.long)
    for token, i in stoi.items():
        if len(token) == 1 and ord(token) < 256:  # skips <unk>, a word-sized token
            table[ord(token)] = i
    return table


def _add_new_symbols(buffer: bytearray, got: int, new_codes: Tensor, stoi: dict[str, int]) -> None:
    """Add the symbols of ``new_codes`` (the block's bytes that ``stoi`` lacks) in the order
    of their first position in the block."""
    new = torch.bincount(new_codes, minlength=256).nonzero().squeeze(1).tolist()
    # bytearray.find is a C scan that stops at the first hit
    for b in sorted(new, key=lambda b: buffer.find(b, 0, got)):
        stoi.setdefault(chr(b), len(stoi))
