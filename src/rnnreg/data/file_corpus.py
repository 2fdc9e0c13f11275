"""A :class:`Corpus` straight from its files: streamed, and through the id cache when large.

Each split is tokenized from its file in blocks (:mod:`.word_stream`, :mod:`.byte_stream`) into
int64 ids that go either to memory (one growing ``array('q')`` per split, which the tensor then
shares) or, for a large corpus with a cache folder, straight to the id cache's files, which are
then memory-mapped (:mod:`.id_cache`). A later load with unchanged files maps the cached ids and
tokenizes nothing. The splits stay (N,) int64 tensors either way, as batching and the loss's
targets expect; the cache stores int64 too, so a mapped split needs no copy (int32 files would
be half the size but every load would then hold an int64 copy: 826 MB for WikiText-103).

The results are those of :func:`~rnnreg.data.corpus.build_corpus` on the decoded texts: the
vocabulary from the training split in first-seen order, held-out tokens missing from it mapped
to one ``<unk>`` (added at the end if the training split lacks it) with a warning.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .byte_stream import byte_ids, bytes_are_symbols
from .corpus import Corpus, build_corpus
from .errors import DataError
from .id_cache import SPLITS, IdCache, cache_key, worth_caching
from .textfile import open_text_file, read_text
from .tokenize import check_level
from .vocab import UNK, Vocabulary
from .word_stream import StreamStats, growing_vocabulary, word_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One split's text: bytes ``[start, stop)`` of ``path`` (``stop`` None: to the end);
    ``label`` names it in messages and in ``Corpus.sources``."""

    path: Path
    label: str
    start: int = 0
    stop: int | None = None


def load_corpus(train_path: str | Path, valid_path: str | Path, test_path: str | Path, *,
                level: str, name: str, encoding: str = "utf-8",
                cache_folder: str | Path | None = None) -> Corpus:
    """Read and tokenize three text files into a :class:`Corpus`.

    Args:
        train_path, valid_path, test_path: the split files.
        level: ``"word"`` (``line.split() + ["<eos>"]`` per line) or ``"char"`` (every character).
        name: the corpus name for logs and reports.
        encoding: ``"utf-8"``, or ``"latin-1"`` to read a byte-level corpus one symbol per byte.
        cache_folder: where the ids of large files are kept and mapped from (see
            :mod:`.id_cache`); None: tokenize every time.

    Raises:
        DataError: a file is missing, empty, binary, not UTF-8, or holds no tokens.
    """
    check_level(level)
    paths = [Path(p) for p in (train_path, valid_path, test_path)]
    for path in paths:  # a missing or empty file is refused before anything is tokenized
        open_text_file(path).close()
    if level == "char" and not all(bytes_are_symbols(p, encoding) for p in paths):
        texts = [read_text(p, encoding=encoding) for p in paths]  # several bytes per character
        return build_corpus(*texts, level=level, name=name, sources=tuple(map(str, paths)))
    cache = _cache(cache_folder, paths, level, encoding, "three files")
    return _load_parts([Part(p, str(p)) for p in paths], level, name, encoding, cache)


def load_single_file(path: str | Path, *, level: str, name: str, encoding: str = "utf-8",
                     heldout: int = 0, heldout_fraction: float = 0.0,
                     cache_folder: str | Path | None = None) -> Corpus:
    """One file cut into train / valid / test, valid and test its last two held-out blocks of
    ``heldout`` symbols each (or ``heldout_fraction`` of the symbols, rounded down).

    Raises:
        DataError: the file is unusable or too short to hold out two blocks.
    """
    path = Path(path)
    if check_level(level) != "char" or not bytes_are_symbols(path, encoding):
        text = read_text(path, encoding=encoding)
        return split_text(text, str(path), level=level, name=name, heldout=heldout,
                          heldout_fraction=heldout_fraction)
    train_end, held = cut(path.stat().st_size, str(path), heldout, heldout_fraction)
    bounds = (0, train_end, train_end + held, train_end + 2 * held)
    parts = [Part(path, f"{path} ({split} part)", bounds[i], bounds[i + 1]) for i, split in enumerate(SPLITS)]
    cache = _cache(cache_folder, [path], level, encoding, f"heldout={heldout} fraction={heldout_fraction}")
    return _load_parts(parts, level, name, encoding, cache)


def split_text(text: str, source: str, *, level: str, name: str, heldout: int = 0,
               heldout_fraction: float = 0.0) -> Corpus:
    """:func:`load_single_file` for a text already in memory (a small or packaged file)."""
    train_end, held = cut(len(text), source, heldout, heldout_fraction)
    pieces = (text[:train_end], text[train_end:train_end + held], text[train_end + held:])
    sources = tuple(f"{source} ({split} part)" for split in SPLITS)
    return build_corpus(*pieces, level=level, name=name, sources=sources)


def cut(symbols: int, source: str, heldout: int, heldout_fraction: float) -> tuple[int, int]:
    """(where train ends, symbols held out for each of valid and test)."""
    held = heldout or int(symbols * heldout_fraction)
    train_end = symbols - 2 * held
    if held < 1 or train_end < 1:
        raise DataError(f"{source} has {symbols} symbols, too few to hold out 2 x {held} for "
                        f"valid and test")
    return train_end, held


def _cache(folder: str | Path | None, paths: Sequence[Path], level: str, encoding: str,
           cut_rule: str) -> IdCache | None:
    if folder is None or not worth_caching(paths):
        return None
    return IdCache(folder, cache_key(paths, level=level, encoding=encoding, cut=cut_rule))


def _load_parts(parts: Sequence[Part], level: str, name: str, encoding: str,
                cache: IdCache | None) -> Corpus:
    hit = cache.load() if cache is not None else None
    if hit is None:
        if cache is not None and not cache.writable():
            cache = None
        try:
            hit = _encode(parts, level, name, encoding, cache)
        except BaseException:
            if cache is not None:
                cache.discard()
            raise
    else:
        log.info("%s: token ids mapped from the cache %s", name, cache.folder)
    itos, tensors = hit
    corpus = Corpus(name, level, Vocabulary.from_list(itos), *tensors,
                    sources=tuple(p.label for p in parts))
    log.info("loaded %r", corpus)
    return corpus


def _encode(parts: Sequence[Part], level: str, name: str, encoding: str,
            cache: IdCache | None) -> tuple[list[str], list[Tensor]]:
    """Tokenize the three parts: (vocabulary, the (N,) int64 tensors)."""
    stoi = growing_vocabulary()
    tensors: list[Tensor] = []
    lengths: dict[str, int] = {}
    unknown = 0
    for split, part in zip(SPLITS, parts):
        stats = StreamStats()
        # held-out splits: the id <unk> has or will get (the vocabulary is fixed after train)
        blocks = _blocks(part, level, encoding, stoi, grow=split == "train",
                         unknown_id=stoi.get(UNK, len(stoi)), stats=stats)
        if cache is not None:
            lengths[split] = cache.write_split(split, blocks)
        else:
            tensors.append(_collect(blocks))
        if not stats.has_tokens():
            raise DataError(f"{part.label} has no tokens" + (" (only whitespace)" if stats.has_text else ""))
        unknown += stats.unknown
    if unknown:
        added = UNK not in stoi
        stoi.setdefault(UNK, len(stoi))
        log.warning("%s: %d valid/test tokens are not in the training vocabulary; they map to %s%s",
                    name, unknown, UNK, " (added to the vocabulary)" if added else "")
    if cache is None:
        return list(stoi), tensors
    cache.commit(list(stoi), lengths)
    written = cache.load()
    if written is None:
        raise DataError(f"the id cache {cache.folder} could not be read back right after writing it")
    return written


def _blocks(part: Part, level: str, encoding: str, stoi: dict[str, int], *, grow: bool,
            unknown_id: int, stats: StreamStats) -> Iterator[array]:
    if level == "word":
        return word_ids(part.path, stoi, grow=grow, unknown_id=unknown_id, encoding=encoding, stats=stats)
    stop = part.stop if part.stop is not None else part.path.stat().st_size
    return byte_ids(part.path, part.start, stop, stoi, grow=grow, unknown_id=unknown_id, stats=stats)


def _collect(blocks: Iterator[array]) -> Tensor:
    """(N,) int64 sharing the memory of one array that the blocks were appended to."""
    ids = array("q")
    for block in blocks:
        ids.extend(block)
    if not ids:
        return torch.empty(0, dtype=torch.long)
    return torch.frombuffer(ids, dtype=torch.long)  # keeps the array alive
