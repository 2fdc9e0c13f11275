"""Checks made before a run writes anything: what the config asks of this machine.

The schema checks a config on its own; these check it against the machine it is about to run on
(a GPU, an optional package, a writable output folder, torchrun's process count), so that a run
that cannot start says why in one line and leaves no half-made run directory behind. Nothing
here creates or changes a file.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import tempfile
from pathlib import Path

import torch

from ..config import Config
from .distributed import Distributed


class PreflightError(Exception):
    """The machine cannot run this config as asked: a one-line reason and what to change."""


def check(config: Config, *, resume_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`PreflightError` if ``config`` cannot run here. A new run needs
    ``train.out_dir`` to be creatable; a resumed one (``resume_dir``) its own folder writable."""
    dist = Distributed.from_env()
    _device(config.train.device, dist)
    if config.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise PreflightError("train.tensorboard = true needs the tensorboard package: pip install tensorboard "
                             "(or set train.tensorboard=false)")
    if resume_dir is not None:
        _writable(Path(resume_dir), f"the run directory {str(resume_dir)!r} cannot be written to")
    else:
        _creatable(Path(config.train.out_dir))
    _processes(config, dist)


def _device(requested: str, dist: Distributed) -> None:
    if not requested.startswith("cuda"):
        return
    try:
        index = torch.device(requested).index
    except RuntimeError:
        raise PreflightError(f"train.device = {requested!r} is not a device; use cuda or cuda:N") from None
    if not torch.cuda.is_available():
        raise PreflightError(f"train.device = {requested!r} but torch sees no CUDA GPU "
                             "(torch.cuda.is_available() is False); use train.device=cpu or auto")
    # Under torchrun a plain "cuda" means this rank's GPU (Distributed.device).
    index = dist.local_rank if index is None and dist.enabled else index or 0
    count = torch.cuda.device_count()
    if index >= count:
        raise PreflightError(f"train.device = {requested!r} asks for GPU {index} but there "
                             f"{'is 1 GPU' if count == 1 else f'are {count} GPUs'} (0 to {count - 1})")


def _creatable(out_dir: Path) -> None:
    """``out_dir`` is a writable folder, or its nearest existing ancestor is one (so the run's
    ``mkdir -p`` will work)."""
    path = out_dir.expanduser().absolute()
    existing = path
    while not existing.exists():
        if existing.is_symlink():                     # a dangling link: mkdir fails on it
            raise PreflightError(f"train.out_dir = {str(out_dir)!r} cannot be created: "
                                 f"{str(existing)!r} is a broken symbolic link")
        existing = existing.parent
    what = f"train.out_dir = {str(out_dir)!r} cannot be " + ("written to" if existing == path else "created")
    if not existing.is_dir():
        raise PreflightError(f"{what}: {str(existing)!r} is a file, not a folder")
    _writable(existing, what)


def _writable(folder: Path, what: str) -> None:
    """A folder this process can make entries in. os.access answers yes to root everywhere (and
    /proc takes no new folders), so an empty folder is made and removed again to be sure."""
    if not folder.is_dir():
        raise PreflightError(f"{what}: {str(folder)!r} is not a folder")
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        os.rmdir(tempfile.mkdtemp(prefix=".rnnreg-preflight-", dir=folder))
    except OSError as err:
        raise PreflightError(f"{what}: cannot write in {str(folder)!r} ({err.strerror or err})") from None


def _processes(config: Config, dist: Distributed) -> None:
    """torchrun splits each step's batch over the processes (sequence tasks: evenly; a language
    model: by columns, at least one each)."""
    if not dist.enabled:
        return
    batch, world = config.data.batch_size, dist.world_size
    if config.task.kind != "lm" and batch % world:
        raise PreflightError(f"data.batch_size ({batch}) must divide evenly over the {world} processes "
                             f"(task.kind = {config.task.kind!r} splits every batch); use a multiple of {world}")
    if batch < world:
        raise PreflightError(f"data.batch_size ({batch}) is smaller than the {world} processes: "
                             "each takes at least one column")
