"""MNIST from LeCun's idx files: a local folder, the cache, or a download (LeCun & Cortes).

Where the files are looked for, as for the language-model datasets (``rnnreg.data.datasets``):
the ``path`` folder when given (the user's copy: a checksum mismatch there is logged, not refused;
``.gz`` or uncompressed), else the cache folder ``<cache_dir>/mnist/``, else the download, from
each mirror in turn. Downloads are verified against the SHA-256 of the canonical ``.gz`` files
before they enter the cache, and cached files are hashed again on load (11 MiB, tens of
milliseconds), so a corrupted cache is fetched again rather than read.

Checksums: the ``.gz`` SHA-256 are those of the project's ``shared/data/mnist/SHA256SUMS`` (the
canonical files, whose MD5 torchvision publishes); the SHA-256 of the uncompressed files were
computed from those same files.

The idx format: 2 zero bytes, a type byte (0x08: unsigned bytes), the number of dimensions, each
dimension as a big-endian uint32, then the values, row-major. Images are 0x00000803 (N, 28, 28),
labels 0x00000801 (N,).
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .download import default_cache_dir, fetch, file_digest
from .errors import DataError, DownloadError
from .registry import DataFile

log = logging.getLogger(__name__)

MIRRORS = ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")
UBYTE = 0x08
IMAGE_SIZE = (28, 28)


@dataclass(frozen=True)
class IdxFile:
    """One MNIST file: the canonical ``.gz`` (its name, SHA-256 and size) and, uncompressed, its
    SHA-256; ``ndim`` is the idx rank (3 for images, 1 for labels)."""
    gz: DataFile
    raw_sha256: str
    ndim: int

    @property
    def stem(self) -> str:
        return self.gz.name.removesuffix(".gz")


def _file(stem: str, gz_sha: str, gz_size: int, raw_sha: str, ndim: int) -> IdxFile:
    return IdxFile(DataFile(f"{stem}.gz", sha256=gz_sha, size=gz_size), raw_sha, ndim)


# (train images, train labels, test images, test labels)
FILES = (
    _file("train-images-idx3-ubyte", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
          9_912_422, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 3),
    _file("train-labels-idx1-ubyte", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
          28_881, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 1),
    _file("t10k-images-idx3-ubyte", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
          1_648_877, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 3),
    _file("t10k-labels-idx1-ubyte", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
          4_542, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 1),
)
NAMES = " ".join(f.gz.name for f in FILES)


@dataclass(frozen=True)
class MNIST:
    """The four MNIST tensors: images uint8 (N, 28, 28) in 0..255, labels uint8 (N,) in 0..9."""
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def read_idx(path: str | Path) -> Tensor:
    """An idx file of unsigned bytes (gzip-compressed or not) as a uint8 tensor of its shape.

    Raises:
        DataError: unreadable gzip, bad magic number, unsupported value type, or a payload that is
            shorter (truncated) or longer than the header's dimensions say.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # the gzip magic; names alone cannot be trusted
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path} is not a readable gzip file ({err})") from err
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DataError(f"{path} is not an idx file: bad magic number {data[:4].hex() or 'none'}")
    if data[2] != UBYTE:
        raise DataError(f"{path}: idx value type 0x{data[2]:02x} is not supported (only 0x08, unsigned bytes)")
    ndim, header = data[3], 4 + 4 * data[3]
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path}: idx header for {ndim} dimensions is cut short ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected, got = math.prod(shape), len(data) - header
    if got != expected:
        problem = "truncated" if got < expected else "longer than its header says"
        raise DataError(f"{path}: {problem}: {got} bytes of values for shape {shape} ({expected} expected)")
    values = bytearray(memoryview(data)[header:])  # a writable copy for torch
    return torch.frombuffer(values, dtype=torch.uint8).view(shape)  # (prod(shape),) -> shape


def load_mnist(path: str | Path | None = None, *, cache_dir: str | Path | None = None,
               download: bool = True, mirrors: Sequence[str] = MIRRORS) -> MNIST:
    """MNIST's 60,000 training and 10,000 test images with their labels.

    Args:
        path: a folder holding the four idx files (``.gz`` or uncompressed), used as it is.
        cache_dir: where downloads are kept (default ``$RNNREG_CACHE`` or ``~/.cache/rnnreg``);
            the files go to its ``mnist/`` folder.
        download: fetch the files that are not in the cache.
        mirrors: base URLs tried in order (each file is ``<mirror><name>.gz``).

    Raises:
        DataError: missing or malformed files, or a failed or corrupted download.
    """
    if path is not None:
        folder = Path(path).expanduser()
        paths = [_local_file(folder, f) for f in FILES]
    else:
        folder = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "mnist"
        paths = [_cached_file(folder, f, download, mirrors) for f in FILES]
    tensors = [read_idx(p) for p in paths]
    for p, f, t in zip(paths, FILES, tensors):
        _check_shape(p, f, t)
    for images, labels, split in ((0, 1, "train"), (2, 3, "test")):
        if tensors[images].shape[0] != tensors[labels].shape[0]:
            raise DataError(f"MNIST {split}: {tensors[images].shape[0]} images in {paths[images]} but "
                            f"{tensors[labels].shape[0]} labels in {paths[labels]}")
    return MNIST(*tensors)


def _check_shape(path: Path, expected: IdxFile, tensor: Tensor) -> None:
    if expected.ndim == 3 and tuple(tensor.shape[1:]) != IMAGE_SIZE:
        raise DataError(f"{path}: expected images of shape (N, 28, 28) (magic 0x00000803), "
                        f"got {tuple(tensor.shape)}")
    if expected.ndim == 1:
        if tensor.dim() != 1:
            raise DataError(f"{path}: expected labels of shape (N,) (magic 0x00000801), got {tuple(tensor.shape)}")
        if tensor.numel() and int(tensor.max()) > 9:
            raise DataError(f"{path}: label {int(tensor.max())} is not a digit 0-9")


def _local_file(folder: Path, f: IdxFile) -> Path:
    """The user's copy of ``f`` in ``folder``: ``.gz`` or uncompressed; a checksum mismatch is
    logged (the user chose the files; the structure checks still apply)."""
    for candidate, sha256 in ((folder / f.gz.name, f.gz.sha256), (folder / f.stem, f.raw_sha256)):
        if candidate.is_file():
            digest = file_digest(candidate)
            if digest != sha256:
                log.warning("%s differs from the canonical MNIST file (sha256 %s, expected %s); results "
                            "may not be comparable with the literature", candidate, digest, sha256)
            return candidate
    raise DataError(f"{folder} does not hold the MNIST files: expected {NAMES} (or the same names "
                    f"without .gz)")


def _cached_file(folder: Path, f: IdxFile, download: bool, mirrors: Sequence[str]) -> Path:
    """``f`` from the cache, verified; fetched (and verified) when it is missing or corrupted."""
    target = folder / f.gz.name
    if target.is_file():
        if file_digest(target) == f.gz.sha256:
            return target
        log.warning("%s: cached file has the wrong checksum; fetching it again", target)
    if not download:
        raise DataError(f"MNIST is not in the cache {folder} and download is off; pass a local folder: "
                        f"data.path=DIR (holding {NAMES})")
    failures: list[DownloadError] = []
    for mirror in mirrors:
        try:
            return fetch(mirror + f.gz.name, target, f.gz.sha256, size=f.gz.size)
        except DownloadError as err:
            failures.append(err)
    tried = " or ".join(f"{err.url} ({err.reason})" for err in failures) or "no mirror"
    raise DataError(f"could not download MNIST's {f.gz.name} from {tried}; download it yourself or pass "
                    f"a local folder: data.path=DIR (holding {NAMES})")
