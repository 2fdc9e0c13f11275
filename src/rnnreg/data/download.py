"""Downloading dataset files into the cache: the only module of rnnreg that touches the network.

A download goes to a temporary file next to its destination and is renamed into place only after
its size and checksum are verified, so an interrupted or corrupted download never looks like a
cached file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DataError, DownloadError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PROGRESS_EVERY = 32 << 20  # log progress every 32 MiB when the server does not give the size
USER_AGENT = "rnnreg (python urllib)"


def default_cache_dir() -> Path:
    """``$RNNREG_CACHE`` if set, else ``~/.cache/rnnreg``."""
    env = os.environ.get("RNNREG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rnnreg"


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``"sha256"`` or ``"sha1"``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def fetch(url: str, dest: str | Path, sha256: str | None = None, *, size: int | None = None,
          timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` and verify it.

    Args:
        url: an ``http(s)://`` or ``file://`` address.
        dest: the file to create (its folder is created if needed; an existing file is replaced).
        sha256: the expected SHA-256 (hex). When None, the digest is logged so it can be recorded.
        size: the expected size in bytes, checked when given.
        timeout: seconds to wait for the server before giving up.

    Returns:
        ``dest``.

    Raises:
        DownloadError: the URL could not be fetched (no network, HTTP error, timeout, cut short).
        DataError: the downloaded bytes do not match ``sha256`` or ``size``; nothing is kept.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest, got = _download(url, out, timeout)
        _check(url, digest, got, sha256, size)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(url: str, out, timeout: float) -> tuple[str, int]:
    """Stream ``url`` into ``out``; returns (sha256 hex, bytes written)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    hasher, got = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            log.info("downloading %s (%s)", url, _mib(total) if total else "size unknown")
            step, next_report = (total // 10 if total else PROGRESS_EVERY) or 1, 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                hasher.update(chunk)
                got += len(chunk)
                if got >= next_report + step:
                    next_report = got - got % step
                    log.info("%s: %s%s", url, _mib(got), f" of {_mib(total)}" if total else "")
    except urllib.error.HTTPError as err:
        raise DownloadError(url, f"HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise DownloadError(url, str(err.reason)) from err
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise DownloadError(url, str(err) or type(err).__name__) from err
    except ValueError as err:  # urllib's answer to a malformed or unsupported address
        raise DownloadError(url, str(err)) from err
    if total is not None and got != total:
        raise DownloadError(url, f"connection closed after {got} of {total} bytes")
    return hasher.hexdigest(), got


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _check(url: str, digest: str, got: int, sha256: str | None, size: int | None) -> None:
    if size is not None and got != size:
        raise DataError(f"{url} gave {got} bytes, expected {size}; the download was discarded")
    if sha256 is None:
        log.info("%s: sha256 %s (%d bytes); no published checksum to compare with", url, digest, got)
    elif digest != sha256.lower():
        raise DataError(f"checksum mismatch for {url}: sha256 {digest}, expected {sha256}; "
                        f"the download was discarded")
