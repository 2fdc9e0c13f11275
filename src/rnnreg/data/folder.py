"""A user's corpus folder: three split files found by name.

Accepted names, so the folders of the common references work unchanged:
``train.txt valid.txt test.txt`` (pytorch/examples, AWD-LSTM), ``PREFIX.train.txt ...``
(Mikolov's ``ptb.train.txt``, ``ptb.char.train.txt``) and ``PREFIX.train.tokens ...`` (WikiText's
``wiki.train.tokens``). The three files of a set share the prefix and extension.
"""

from __future__ import annotations

import re
from pathlib import Path

from .corpus import Corpus
from .errors import DataError
from .file_corpus import load_corpus
from .tokenize import check_level

SPLITS = ("train", "valid", "test")
EXPECTED = ("train.txt valid.txt test.txt, or PREFIX.train.txt PREFIX.valid.txt PREFIX.test.txt, "
            "or PREFIX.train.tokens PREFIX.valid.tokens PREFIX.test.tokens")
_NAME = re.compile(r"^(?:(?P<prefix>.+)\.)?(?P<split>train|valid|test)\.(?P<ext>txt|tokens)$")


def split_file_sets(folder: str | Path) -> list[tuple[Path, Path, Path]]:
    """Every complete (train, valid, test) set of split files in ``folder`` (an existing folder)."""
    sets: dict[tuple[str, str], dict[str, Path]] = {}
    for path in sorted(Path(folder).iterdir()):
        match = _NAME.match(path.name)
        if match and path.is_file():
            key = (match["prefix"] or "", match["ext"])
            sets.setdefault(key, {})[match["split"]] = path
    return [(f["train"], f["valid"], f["test"]) for f in sets.values() if len(f) == len(SPLITS)]


def find_split_files(folder: str | Path) -> tuple[Path, Path, Path]:
    """The (train, valid, test) files of ``folder``.

    Raises:
        DataError: the folder is missing, holds no complete set of split files (the message lists
            the expected names and what it found), or holds several sets.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; expected one holding {EXPECTED}")
    complete = split_file_sets(folder)
    if len(complete) > 1:
        listed = "; ".join(" ".join(p.name for p in files) for files in complete)
        raise DataError(f"{folder} holds several sets of split files ({listed}); "
                        f"keep one set per folder")
    if not complete:
        names = sorted(p.name for p in folder.iterdir())
        found = " ".join(names[:12]) + (" ..." if len(names) > 12 else "") if names else "nothing"
        raise DataError(f"{folder} holds no complete set of split files; expected {EXPECTED}; "
                        f"found: {found}")
    return complete[0]


def load_text_folder(folder: str | Path, level: str = "word", *, name: str | None = None,
                     encoding: str = "utf-8") -> Corpus:
    """Load the corpus in ``folder`` (see :func:`find_split_files` for the accepted names).

    Args:
        folder: a folder holding train, valid and test text files.
        level: ``"word"`` or ``"char"``.
        name: the corpus name; the folder's name by default.
        encoding: ``"utf-8"``, or ``"latin-1"`` for a byte-level corpus.
    """
    check_level(level)
    train, valid, test = find_split_files(folder)
    name = name or Path(folder).resolve().name
    return load_corpus(train, valid, test, level=level, name=name, encoding=encoding)
