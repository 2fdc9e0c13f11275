"""A language-modelling corpus: a vocabulary and the train / valid / test splits as id tensors.

The vocabulary comes from the training split only: building it from all three splits (as
AWD-LSTM's ``data.py`` does) lets test-only words into the softmax. PTB and WikiText are
closed-vocabulary (rare words are already ``<unk>`` in the files), so for them this changes nothing
and their vocabularies stay at 10,000 and 33,278 types. For open-vocabulary text, held-out tokens
absent from the training split map to a single added ``<unk>`` type.

:func:`build_corpus` tokenizes texts held in memory; files are streamed by
:func:`~rnnreg.data.file_corpus.load_corpus`, which gives the same result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import DataError
from .tokenize import MISSING, check_level, encode, has_tokens
from .vocab import UNK, Vocabulary

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus.

    Attributes:
        name: what the corpus is called in logs and reports (``"ptb"``, a folder name, ...).
        level: ``"word"`` or ``"char"``; perplexity suits the first, bits per character the second.
        vocab: the token types, from the training split (plus ``<unk>`` if held-out text needs it).
        train, valid, test: (N,) int64 token ids, in text order.
        sources: where the splits were read from (file paths, or ``"PATH (train part)"`` for one
            file cut in three), for error messages and a run's data checksums.
    """

    name: str
    level: str
    vocab: Vocabulary
    train: Tensor
    valid: Tensor
    test: Tensor
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_level(self.level)
        for split in ("train", "valid", "test"):
            ids = getattr(self, split)
            if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
                raise TypeError(f"{split} must be a 1-D int64 tensor of token ids")

    def __repr__(self) -> str:
        return (f"Corpus({self.name!r}, level={self.level!r}, vocab={len(self.vocab)}, "
                f"train={self.train.numel()}, valid={self.valid.numel()}, test={self.test.numel()})")


def build_corpus(train: str, valid: str, test: str, *, level: str, name: str,
                 sources: tuple[str, ...] = ("train", "valid", "test")) -> Corpus:
    """Tokenize three texts into a :class:`Corpus`; ``sources`` name them in error messages.

    Raises:
        DataError: a text has no tokens.
    """
    check_level(level)
    texts = (train, valid, test)
    for text, source in zip(texts, sources):
        if not has_tokens(text, level):
            raise DataError(f"{source} has no tokens" + (" (only whitespace)" if text else ""))
    stoi: dict[str, int] = {}
    train_ids = encode(train, level, stoi, grow=True)
    held_out = [encode(text, level, stoi, grow=False) for text in (valid, test)]
    unknown = sum(int((ids == MISSING).sum()) for ids in held_out)
    if unknown:
        added = UNK not in stoi
        unk_id = stoi.setdefault(UNK, len(stoi))
        held_out = [torch.where(ids == MISSING, unk_id, ids) for ids in held_out]
        log.warning("%s: %d valid/test tokens are not in the training vocabulary; they map to %s%s",
                    name, unknown, UNK, " (added to the vocabulary)" if added else "")
    corpus = Corpus(name, level, Vocabulary.from_list(list(stoi)), train_ids, *held_out, sources=tuple(sources))
    log.info("loaded %r", corpus)
    return corpus
