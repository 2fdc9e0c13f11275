"""Word-level ids straight from a file, a block of lines at a time.

WikiText-103's training file is 540 MB: decoding it whole and splitting it into per-line lists
held several copies of it at once. Here the file is read in blocks of about ``BLOCK`` bytes, each
cut just after its last ``\\n`` byte, so a block always ends a line, never splits a ``\\r\\n`` pair,
and never splits a UTF-8 sequence (0x0A is never part of a multi-byte one). What comes out is
exactly :func:`~rnnreg.data.tokenize.encode_words` of the whole decoded text: every line gives
``line.split() + ["<eos>"]``, ``\\r\\n`` and ``\\r`` end lines as ``\\n`` does (universal newlines),
a leading byte order mark is dropped, a NUL byte or bad UTF-8 is a one-line :class:`DataError`
naming the file and the byte offset.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import BinaryIO

import torch

from .errors import DataError
from .textfile import ENCODINGS, first_nul, open_text_file
from .tokenize import MISSING  # a held-out word that the training vocabulary lacks
from .vocab import EOS

BLOCK = 1 << 20  # bytes per block: its word list (~200k str objects) stays near 20 MB
BOM = b"\xef\xbb\xbf"
_EOS_GAP = f" {EOS} "


@dataclass
class StreamStats:
    """What a streamed file held: ids written, lines (one ``<eos>`` each), held-out words that
    the vocabulary lacked, and whether any character remained after the byte order mark."""

    ids: int = 0
    lines: int = 0
    unknown: int = 0
    has_text: bool = False

    def has_tokens(self) -> bool:
        """A token other than the ``<eos>`` of a line: ``tokenize.has_tokens`` of the text."""
        return self.ids > self.lines


def growing_vocabulary() -> defaultdict[str, int]:
    """A ``stoi`` that gives a new word the next id on first sight (first-seen order)."""
    stoi: defaultdict[str, int] = defaultdict()
    stoi.default_factory = stoi.__len__  # evaluated before the insertion: 0, 1, 2, ...
    return stoi


def word_ids(path: str | Path, stoi: dict[str, int], *, grow: bool, unknown_id: int = MISSING,
             encoding: str = "utf-8", stats: StreamStats | None = None) -> Iterator[array]:
    """The word ids of the file ``path``, as int64 ``array('q')`` blocks in text order.

    Args:
        path: a text file (checked by :func:`~rnnreg.data.textfile.open_text_file`).
        stoi: token -> id. With ``grow`` (the training split) it must come from
            :func:`growing_vocabulary` and gains every new word; else it is only read.
        grow: whether new words join ``stoi``.
        unknown_id: the id a word missing from ``stoi`` gets when not ``grow``.
        encoding: ``"utf-8"`` or ``"latin-1"``.
        stats: filled in while the blocks are consumed.

    Raises:
        DataError: the file is missing, a folder, empty, binary or not valid UTF-8.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
    stats = stats if stats is not None else StreamStats()
    if grow and not isinstance(stoi, defaultdict):
        raise TypeError("grow=True needs the stoi of growing_vocabulary()")
    lookup = stoi.__getitem__ if grow else None
    with open_text_file(path) as f:
        for text in _decoded_blocks(f, str(path), encoding):
            stats.has_text = stats.has_text or bool(text)
            lines = text.count("\n")
            words = text.replace("\n", _EOS_GAP).split()
            if not text.endswith("\n"):  # only the file's last block: an unterminated last line
                words.append(EOS)
                lines += 1
            if lookup is not None:
                ids = array("q", list(map(lookup, words)))  # from a list: twice as fast as a map
            else:
                ids = array("q", list(map(stoi.get, words, repeat(MISSING))))
                stats.unknown += _replace_missing(ids, unknown_id)
            stats.ids += len(ids)
            stats.lines += lines
            yield ids


def _replace_missing(ids: array, unknown_id: int) -> int:
    """Set every ``MISSING`` of ``ids`` to ``unknown_id`` in place; returns how many there were."""
    count = ids.count(MISSING)
    if count and unknown_id != MISSING:
        view = torch.frombuffer(ids, dtype=torch.long)  # shares the array's memory
        view.masked_fill_(view == MISSING, unknown_id)
    return count


def _decoded_blocks(f: BinaryIO, source: str, encoding: str) -> Iterator[str]:
    """The text of ``f`` in blocks ending with ``\\n`` (the last one may not), newlines made
    ``\\n``; empty text yields nothing."""
    offset, carry, first = 0, b"", True
    while True:
        chunk = f.read(BLOCK)
        data = carry + chunk if carry else chunk
        end = data.rfind(b"\n") + 1 if chunk else len(data)
        if chunk and end == 0:  # a line longer than a block: read on
            carry = data
            continue
        piece, carry = data[:end], data[end:]
        start = len(BOM) if first and encoding == "utf-8" and piece.startswith(BOM) else 0
        text = _decode(f, piece, start, offset, source, encoding)
        offset, first = offset + end, False
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if text:
            yield text
        if not chunk:
            return


def _decode(f: BinaryIO, piece: bytes, start: int, offset: int, source: str, encoding: str) -> str:
    """``piece[start:]`` decoded; ``offset`` is where ``piece`` starts in the file."""
    if encoding == "latin-1":
        return piece[start:].decode("latin-1")
    nul = piece.find(b"\x00")
    if nul >= 0:
        raise _binary(source, offset + nul)
    try:
        return piece[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        # a NUL further on wins, as it did when the whole file was checked before decoding
        later = first_nul(f, offset + len(piece))
        if later is not None:
            raise _binary(source, later) from None
        raise DataError(f"{source} is not valid UTF-8 (bad byte at offset "
                        f"{offset + start + err.start}); convert it to UTF-8") from None


def _binary(source: str, offset: int) -> DataError:
    return DataError(f"{source} looks like binary data (NUL byte at offset {offset}), not text")
