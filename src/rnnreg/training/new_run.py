"""``rnnreg.train(config, "runs/x")``: a new run from Python, as ``rnnreg train`` starts one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict, load_config
from ..runs import RunDir
from ..runs.lock import RunLock
from ..tasks.build import build_task
from . import preflight
from .loop import train as train_loop
from .progress import Observer


def train_new_run(config: Config | str | os.PathLike | None, run_dir: str | os.PathLike, *,
                  overrides: Sequence[str] = (), observer: Observer | None = None) -> dict:
    """Train a new run in ``run_dir``, as ``rnnreg train`` does; returns its summary.

    ``config``: a :class:`rnnreg.config.Config`, a preset name, a ``.toml`` file, or None (the
    quickstart preset); ``overrides``: ``section.key=value`` strings applied on top. ``run_dir``
    is created (with its parents) if it does not exist; an existing one must be empty, so that no
    run is overwritten (continue a stopped run with ``rnnreg train --resume RUN``). The data is
    read before anything is written. ``observer`` (:mod:`rnnreg.training.progress`) sees the
    progress; by default it is only logged.
    """
    if isinstance(config, Config):
        resolved = config_from_dict(apply_overrides(config_to_dict(config), overrides)) if overrides else config
    elif config is None or isinstance(config, (str, os.PathLike)):
        resolved = load_config(None if config is None else os.fspath(config), overrides)
    else:
        raise TypeError(f"config must be a Config, a preset name or a .toml path, got {type(config).__name__}")
    path = Path(run_dir)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        what = "holds a run" if (path / "config.toml").is_file() else "is not an empty folder"
        raise ConfigError(f"{path} {what}; pass a new run directory (a stopped run continues with "
                          f"`rnnreg train --resume {path}`)")
    task = build_task(resolved)                       # bad data fails here, before anything is written
    made = [p for p in (path, *path.parents) if not p.exists()]     # what to take back on failure
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the run directory {path}: {err.strerror or err}") from None
    try:                                              # device, optional packages, torchrun: as the CLI
        preflight.check(resolved, resume_dir=path)
    except BaseException:
        for folder in made:                           # innermost first; each is still empty
            folder.rmdir()
        raise
    run = RunDir(path)
    with RunLock(path):                               # one process per run directory
        run.write_config(resolved)
        return train_loop(resolved, run, task=task, observer=observer)
