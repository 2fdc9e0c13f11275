"""Turning text into token ids, at word or character level.

``"word"``: each line becomes ``line.split() + ["<eos>"]``, the convention of pytorch/examples'
``word_language_model`` and of AWD-LSTM (Merity et al. 2017), whose published token counts assume it.
The character-level PTB files hold space-separated symbols, so they use it too.

``"char"``: every character is a token, newlines included, with no ``<eos>`` (Tiny Shakespeare,
text8, and enwik8 read as latin-1 so that each byte is one symbol).

Both encoders take a ``stoi`` dict: with ``grow=True`` (the training split) new types are added to
it in first-seen order; with ``grow=False`` (held-out splits) unknown tokens get id -1 so the caller
can count them and decide about ``<unk>``. Character-level encoding is vectorised because enwik8 and
text8 hold 10^8 characters, too many for a Python loop.
"""

from __future__ import annotations

from array import array

import torch
from torch import Tensor

from .vocab import EOS

LEVELS = ("word", "char")
MISSING = -1  # id given to a held-out token that the training vocabulary lacks


def check_level(level: str) -> str:
    """``level`` if it is a known tokenization, else a ``ValueError`` naming the argument."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    return level


def has_tokens(text: str, level: str) -> bool:
    """Whether ``text`` yields any token besides ``<eos>`` at this level."""
    return bool(text) and not (level == "word" and text.isspace())


def encode(text: str, level: str, stoi: dict[str, int], *, grow: bool) -> Tensor:
    """Ids of the tokens of ``text``: a 1-D LongTensor (``MISSING`` for unknown ones)."""
    if check_level(level) == "word":
        return encode_words(text, stoi, grow=grow)
    return encode_chars(text, stoi, grow=grow)


def encode_words(text: str, stoi: dict[str, int], *, grow: bool) -> Tensor:
    """Word-level ids: every line contributes its whitespace-separated words and one ``<eos>``."""
    if "\r" in text:  # read as Python's text mode would (universal newlines), as the references do
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[-1] == "":  # a final newline ends the last line rather than starting an empty one
        lines.pop()
    ids = array("q")
    for line in lines:
        words = line.split()
        words.append(EOS)
        if grow:
            ids.extend([stoi.setdefault(w, len(stoi)) for w in words])
        else:
            ids.extend([stoi.get(w, MISSING) for w in words])
    if not ids:
        return torch.empty(0, dtype=torch.long)
    return torch.frombuffer(ids, dtype=torch.long)  # shares the array's memory, keeps it alive


def encode_chars(text: str, stoi: dict[str, int], *, grow: bool) -> Tensor:
    """Character-level ids: one token per character."""
    if not text:
        return torch.empty(0, dtype=torch.long)
    codes = code_points(text)  # (N,) uint8 or int32
    if grow:
        present = torch.bincount(codes).nonzero().squeeze(1).tolist()
        # first-seen order, as for words; str.find is a C scan that stops at the first hit
        for ch in sorted((chr(c) for c in present), key=text.find):
            stoi.setdefault(ch, len(stoi))
    table = torch.full((int(codes.max()) + 1,), MISSING, dtype=torch.long)
    known = [(ord(tok), i) for tok, i in stoi.items() if len(tok) == 1 and ord(tok) < len(table)]
    if known:
        where, ids = zip(*known)
        table[torch.tensor(where)] = torch.tensor(ids)
    return table.index_select(0, codes.to(torch.int32))  # (N,); int32 indices: no int64 copy


def code_points(text: str) -> Tensor:
    """Unicode code points of ``text``: (N,) uint8 when every character is below 256, else int32."""
    try:
        return torch.frombuffer(bytearray(text.encode("latin-1")), dtype=torch.uint8)
    except UnicodeEncodeError:
        return torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32)
