"""The error raised for unusable data: a missing, empty, binary or badly encoded file, a failed
download or a checksum mismatch. A ``ValueError`` so callers that validate arguments catch it too."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset or text file cannot be used; the one-line message names the file or URL."""


class DownloadError(DataError):
    """A URL could not be fetched (no network, HTTP error, timeout).

    Attributes:
        url: the address that failed.
        reason: the underlying error in words (for example ``"timed out"``).
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"could not download {url} ({reason})")
        self.url = url
        self.reason = reason
