"""A vocabulary: the list of token types (``itos``) and its inverse map (``stoi``).

Ids are assigned in first-seen order, as in pytorch/examples' ``data.py`` and AWD-LSTM, so the same
training text always gives the same ids (a ``set`` would not: string hashing is salted per process).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

EOS = "<eos>"
UNK = "<unk>"


class Vocabulary:
    """Token types in id order. Build with :meth:`build` or restore with :meth:`from_list`.

    Tokens outside the vocabulary map to ``<unk>`` when the vocabulary holds it, and are refused
    otherwise.
    """

    def __init__(self, itos: Sequence[str] = ()) -> None:
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        for token in itos:
            if not isinstance(token, str):
                raise TypeError(f"itos must hold strings, got {type(token).__name__} {token!r}")
            if token in self.stoi:
                raise ValueError(f"itos holds {token!r} twice; a vocabulary lists each type once")
            self.stoi[token] = len(self.itos)
            self.itos.append(token)

    @classmethod
    def build(cls, tokens: Iterable[str]) -> Vocabulary:
        """The vocabulary of ``tokens``, each type given the next id when first seen."""
        stoi: dict[str, int] = {}
        for token in tokens:
            stoi.setdefault(token, len(stoi))
        return cls(list(stoi))

    @classmethod
    def from_list(cls, itos: Sequence[str]) -> Vocabulary:
        """Restore a vocabulary from :meth:`to_list` (for checkpoints)."""
        return cls(itos)

    def to_list(self) -> list[str]:
        """The token types in id order: a plain list that checkpoints store as is."""
        return list(self.itos)

    def index(self, token: str) -> int:
        """The id of ``token`` (of ``<unk>`` for an unknown token when the vocabulary has one)."""
        found = self.stoi.get(token)
        if found is not None:
            return found
        unk = self.stoi.get(UNK)
        if unk is None:
            raise ValueError(f"token {token!r} is not in the vocabulary, which has no {UNK!r}")
        return unk

    def encode(self, tokens: Iterable[str]) -> Tensor:
        """Ids of ``tokens`` as a 1-D LongTensor."""
        return torch.tensor([self.index(token) for token in tokens], dtype=torch.long)

    def decode(self, ids: Tensor | Iterable[int]) -> list[str]:
        """Tokens of ``ids`` (any shape of tensor is read flat)."""
        values = ids.reshape(-1).tolist() if isinstance(ids, Tensor) else list(ids)  # (N,)
        size = len(self.itos)
        for i in values:
            if not 0 <= i < size:
                raise ValueError(f"ids holds {i}, outside the vocabulary's range [0, {size})")
        return [self.itos[i] for i in values]

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.itos == other.itos

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.itos[:5])
        more = ", ..." if len(self.itos) > 5 else ""
        return f"Vocabulary({len(self.itos)} types: [{head}{more}])"
