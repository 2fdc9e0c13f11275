"""One process per run directory: an OS-level lock on ``RUN/.lock``.

Two ``rnnreg train --resume RUN`` at once used to interleave their checkpoint renames and their
metrics lines (one died on a vanished ``last.pt.tmp``, the other kept a fraction of the log).
``fcntl.flock`` is held by the open file, so the kernel releases it when the process ends in any
way, SIGKILL included: a lock is never stale, and nothing has to be cleaned up after a crash. The
file's text (pid, host, start time) only names the holder in the refusal; the flock decides.

flock is advisory and, on some network file systems, local to one machine; rnnreg's own commands
are the only writers it needs to keep apart. Without ``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:                                    # Windows: runs are not locked
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another process holds the run directory; the message names it, in one line."""


class RunLock:
    """``with RunLock(run_path):`` holds ``run_path/.lock`` until the block ends (or the process does).

    Raises :class:`RunLocked` at once, without waiting, when another process holds it."""

    def __init__(self, run_path: str | os.PathLike) -> None:
        self.path = Path(run_path) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        if fcntl is None:
            log.warning("no fcntl on this system: %s is not locked against a second process", self.path.parent)
            return self
        # No O_TRUNC: the holder's text must survive a refused process opening the file.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLocked(f"{self.path.parent} is in use by {holder}; wait for it to end or stop it "
                            "(one process per run directory)") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)                         # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    # The holder writes its text just after taking the lock: a refusal in between reads nothing.
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return f"another rnnreg process ({text})" if text else "another rnnreg process"
