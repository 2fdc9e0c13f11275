"""The encoded ids of a large corpus, kept on disk and memory-mapped on later loads.

Tokenizing WikiText-103 (103M tokens) takes about a minute; loading its cached ids takes 0.3 s,
most of it the vocabulary (``benchmarks/bench_corpus_load.py``), since ``torch.from_file`` maps the file instead
of reading it: the pages come from the OS page cache as they are touched and are shared by every
process that maps the same file (the ranks of a torchrun). The mapping is private: writing into
a split copies the pages written and never changes the file.

A folder of the cache holds, for one key: ``<digest>.json`` (the key, the vocabulary in id
order, the split lengths) and ``<digest>.{train,valid,test}.i64`` (raw int64 ids in this
machine's byte order). The key names the source files (absolute path, size, modification time),
the tokenization (level, encoding, how one file is cut) and ``FORMAT``, so a changed source file,
a moved folder or a new encoding format reads as a miss and the ids are written anew (an edit
that keeps both the size and the modification time would go unseen: delete the entry then). Every
file is written to a temporary name and renamed into place, the manifest last: a reader never
sees a half-written entry, and two processes writing the same entry write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the files or their meaning change: older entries then read as misses
MIN_BYTES = 32 << 20  # sources smaller than this tokenize in about a second: not worth a cache
SPLITS = ("train", "valid", "test")
_ENTRY = re.compile(r"^[0-9a-f]{16}\.(json|(train|valid|test)\.i64)$")


def worth_caching(paths: Iterable[Path]) -> bool:
    """Whether sources this large are worth an id cache (``MIN_BYTES`` in all)."""
    return sum(p.stat().st_size for p in set(paths)) >= MIN_BYTES


def cache_key(paths: Sequence[Path], *, level: str, encoding: str, cut: str) -> dict:
    """What the ids depend on: the files as they are now, and how they were tokenized.
    ``cut`` says how the splits come from the files ("three files", or a held-out rule)."""
    files = []
    for path in paths:
        stat = path.stat()
        files.append({"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return {"format": FORMAT, "level": level, "encoding": encoding, "cut": cut,
            "byteorder": sys.byteorder, "files": files}


class IdCache:
    """One entry of the id cache: ``folder`` and the ``key`` of the ids it may hold."""

    def __init__(self, folder: str | Path, key: dict) -> None:
        self.folder = Path(folder)
        self.key = key
        self.digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def _path(self, suffix: str) -> Path:
        return self.folder / f"{self.digest}.{suffix}"

    def load(self) -> tuple[list[str], list[Tensor]] | None:
        """(vocabulary in id order, the three (N,) int64 id tensors, memory-mapped), or None
        when the entry is absent, stale or damaged (then it is simply written again)."""
        manifest = self._path("json")
        if not manifest.is_file():
            return None
        try:
            entry = json.loads(manifest.read_text(encoding="utf-8"))
            if entry["key"] != self.key:
                return None
            tensors = [self._map(split, int(entry["lengths"][split])) for split in SPLITS]
            return list(entry["itos"]), tensors
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            log.warning("%s: unusable id cache entry (%s); tokenizing again", manifest, err)
            return None

    def _map(self, split: str, length: int) -> Tensor:
        path = self._path(f"{split}.i64")
        if path.stat().st_size != 8 * length:
            raise ValueError(f"{path.name} holds {path.stat().st_size} bytes, expected {8 * length}")
        if length == 0:
            return torch.empty(0, dtype=torch.long)
        # shared=False: a private mapping, so writing into the tensor never changes the file
        return torch.from_file(str(path), shared=False, size=length, dtype=torch.long)

    def writable(self) -> bool:
        """Whether the folder can take an entry (created if needed); logs why not."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder):
                return True
        except OSError as err:
            log.warning("cannot write the id cache in %s (%s); the ids stay in memory",
                        self.folder, err.strerror or err)
            return False

    def write_split(self, split: str, blocks: Iterable) -> int:
        """Write the id blocks (int64 ``array('q')``) of ``split``; returns how many ids."""
        count = 0
        handle, tmp = tempfile.mkstemp(prefix=f".{self.digest}.{split}.", suffix=".part", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as out:
                for block in blocks:
                    out.write(block)
                    count += len(block)
            os.replace(tmp, self._path(f"{split}.i64"))
        finally:
            Path(tmp).unlink(missing_ok=True)
        return count

    def commit(self, itos: Sequence[str], lengths: dict[str, int]) -> None:
        """Write the manifest, which makes the entry visible, and drop other keys' entries."""
        entry = {"key": self.key, "itos": list(itos), "lengths": lengths}
        handle, tmp = tempfile.mkstemp(prefix=f".{self.digest}.", suffix=".part", dir=self.folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(entry, out)
            os.replace(tmp, self._path("json"))
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._drop_others()

    def discard(self) -> None:
        """Remove what :meth:`write_split` wrote for an entry that will not be committed."""
        for split in SPLITS:
            self._path(f"{split}.i64").unlink(missing_ok=True)

    def _drop_others(self) -> None:
        """Entries of other keys in this folder are stale (the sources changed): remove them."""
        for path in self.folder.iterdir():
            if _ENTRY.match(path.name) and not path.name.startswith(self.digest):
                path.unlink(missing_ok=True)
