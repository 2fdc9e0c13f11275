"""``load_dataset``: a registered dataset by name (local folder, cache or download), or a folder.

Where a registered dataset's files are looked for, in order: the ``path`` folder when given (the
user's own copy; a checksum mismatch there is logged, not refused, since the user chose those
files), the package itself (Tiny Shakespeare), the cache folder ``<cache_dir>/<name>/``, and
finally the download. Downloaded files are verified before they enter the cache; a later load
from the cache only checks sizes, because hashing WikiText-103 or enwik8 on every run costs
seconds and the atomic writes already rule out half-written files.

The token ids of a large corpus (WikiText-103, enwik8, text8) are cached too (:mod:`.id_cache`):
next to the downloaded files in ``<cache_dir>/<name>/ids/``, and for a ``path`` folder in
``<cache_dir>/<name>/ids-local-<hash of its absolute path>/``, so the user's folder is only read.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from pathlib import Path

from .archive import extract_members
from .corpus import Corpus
from .download import default_cache_dir, fetch, file_digest
from .errors import DataError, DownloadError
from .file_corpus import load_corpus, load_single_file, split_text
from .folder import EXPECTED, find_split_files, load_text_folder, split_file_sets
from .registry import REGISTRY, DataFile, DatasetSpec
from .textfile import decode_text

log = logging.getLogger(__name__)


def load_dataset(name_or_path: str | Path, *, path: str | Path | None = None,
                 level: str | None = None, cache_dir: str | Path | None = None,
                 download: bool = True) -> Corpus:
    """Load a registered dataset (see ``registry.describe()``) or a folder of split files.

    Args:
        name_or_path: a registered name such as ``"ptb"``, or a folder holding
            ``train.txt valid.txt test.txt`` (or ``*.train.txt`` / ``*.train.tokens`` sets).
            A registered name wins over a folder of that name: write ``./ptb`` for the folder.
        path: a folder holding the named dataset's files, used instead of the cache.
        level: ``"word"`` or ``"char"``; for a folder (default ``"word"``). A registered dataset
            has its own level and refuses another.
        cache_dir: where downloads are kept (default ``$RNNREG_CACHE`` or ``~/.cache/rnnreg``).
        download: fetch a registered dataset that is not in the cache.

    Raises:
        DataError: unknown name, unusable files, or a failed download (the message says how to
            provide the files by hand).
    """
    spec = REGISTRY.get(str(name_or_path))
    if spec is None:
        return _load_folder(Path(name_or_path).expanduser(), path, level)
    if level is not None and level != spec.level:
        raise ValueError(f"level={level!r} does not fit {spec.name}, a {spec.level}-level dataset")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if path is not None:
        folder = Path(path).expanduser()
        return _load_local(spec, folder, _local_ids_folder(cache / spec.name, folder))
    if spec.packaged:
        resource = resources.files(__package__).joinpath(spec.name).joinpath(spec.files[0].name)
        text = decode_text(resource.read_bytes(), str(resource), encoding=spec.encoding)
        return split_text(text, str(resource), level=spec.level, name=spec.name, heldout=spec.heldout,
                          heldout_fraction=spec.heldout_fraction)
    return _load_cached(spec, cache / spec.name, download)


def _local_ids_folder(dataset_cache: Path, folder: Path) -> Path:
    """Where the ids of a user's copy are cached: in the cache folder, never in the user's
    folder (which may be read-only or shared), one subfolder per absolute path."""
    return dataset_cache / f"ids-local-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]}"


def _load_folder(folder: Path, path: str | Path | None, level: str | None) -> Corpus:
    if not folder.is_dir():
        raise DataError(f"unknown dataset {str(folder)!r}: expected one of {', '.join(REGISTRY)}, "
                        f"or a folder holding {EXPECTED}")
    if path is not None:
        raise ValueError("path is for a registered dataset name; a folder is loaded directly")
    return load_text_folder(folder, level or "word")


def _load_local(spec: DatasetSpec, folder: Path, ids: Path) -> Corpus:
    paths = [folder / f.name for f in spec.files]
    if all(p.is_file() for p in paths):
        for p, expected in zip(paths, spec.files):
            problem = _mismatch(p, expected, full=True)
            if problem:
                log.warning("%s differs from the published %s file (%s); results may not be "
                            "comparable with the literature", p, spec.name, problem)
        return _load_files(spec, paths, ids)
    if len(spec.files) == 3 and folder.is_dir() and split_file_sets(folder):
        # the layout of the reference code, e.g. AWD-LSTM's data/penn/{train,valid,test}.txt
        return load_corpus(*find_split_files(folder), level=spec.level, name=spec.name,
                           encoding=spec.encoding, cache_folder=ids)
    alternative = f", or {EXPECTED}" if len(spec.files) == 3 else ""
    raise DataError(f"{folder} does not hold the {spec.name} files: expected "
                    f"{spec.file_names()}{alternative}")


def _load_cached(spec: DatasetSpec, folder: Path, download: bool) -> Corpus:
    paths = [folder / f.name for f in spec.files]
    present = [p.is_file() for p in paths]
    stale = [str(p) for p, f, ok in zip(paths, spec.files, present)
             if ok and _mismatch(p, f, full=False)]
    if stale:
        log.warning("%s: cached %s has the wrong size; fetching it again", spec.name, ", ".join(stale))
    if stale or not all(present):
        if not download:
            raise DataError(f"{spec.name} is not in the cache {folder} and download is off; "
                            f"pass a local folder: data.path=DIR (holding {spec.file_names()})")
        _download(spec, folder)
    return _load_files(spec, paths, folder / "ids")


def _download(spec: DatasetSpec, folder: Path) -> None:
    """Fetch ``spec`` into ``folder``, extract its files and verify each one."""
    target = folder / (spec.archive or spec.files[0].name)
    sha256 = spec.archive_sha256 if spec.archive else spec.files[0].sha256
    size = spec.archive_size if spec.archive else spec.files[0].size
    failures: list[DownloadError] = []
    for url in spec.urls:
        try:
            fetch(url, target, sha256, size=size)
            break
        except DownloadError as err:
            failures.append(err)
    else:
        tried = " or ".join(f"{err.url} ({err.reason})" for err in failures)
        raise DataError(f"could not download {spec.name} from {tried}; download it yourself or pass "
                        f"a local folder: data.path=DIR (holding {spec.file_names()})")
    if spec.archive:
        extract_members(target, {f.member or f.name: folder / f.name for f in spec.files})
        target.unlink()
    for f in spec.files:
        problem = _mismatch(folder / f.name, f, full=True)
        if problem:
            for other in spec.files:  # the whole download is suspect: keep none of it
                (folder / other.name).unlink(missing_ok=True)
            raise DataError(f"{spec.name}: {f.name} from {target.name} has {problem}; the "
                            f"download was removed")


def _mismatch(path: Path, expected: DataFile, *, full: bool) -> str | None:
    """How ``path`` differs from ``expected`` (None if it matches); ``full`` also hashes it."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        return f"{size} bytes, expected {expected.size}"
    if not full:
        return None
    if expected.sha256 or expected.sha1:
        algorithm, want = ("sha256", expected.sha256) if expected.sha256 else ("sha1", expected.sha1)
        got = file_digest(path, algorithm)
        return None if got == want else f"{algorithm} {got}, expected {want}"
    log.info("%s: sha256 %s (no published checksum to compare with)", path, file_digest(path))
    return None


def _load_files(spec: DatasetSpec, paths: list[Path], ids: Path) -> Corpus:
    """The corpus in ``paths``; ``ids``: the id cache's folder (used for large files only)."""
    if len(paths) == 3:
        return load_corpus(*paths, level=spec.level, name=spec.name, encoding=spec.encoding,
                           cache_folder=ids)
    return load_single_file(paths[0], level=spec.level, name=spec.name, encoding=spec.encoding,
                            heldout=spec.heldout, heldout_fraction=spec.heldout_fraction,
                            cache_folder=ids)
