"""A run directory: what one training run writes, under names every command agrees on.

    runs/<name>/config.toml     the resolved config (what ``rnnreg train`` was given, overrides applied)
    runs/<name>/metrics.jsonl   step / eval / epoch / event records (rnnreg.runs.metrics)
    runs/<name>/summary.json    final numbers and status, for ``rnnreg report``
    runs/<name>/last.pt         the latest checkpoint (resume from here); last.pt.prev before it
    runs/<name>/best.pt         the weights with the best validation loss
    runs/<name>/sample.txt      text generated at the end of training
    runs/<name>/plots/          ``rnnreg plot`` output
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .atomic_text import write_text_atomic
from ..config import Config, ConfigError, config_from_dict, dump_config


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def sample(self) -> Path:
        return self.path / "sample.txt"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def read_config(self) -> Config:
        import tomllib

        if not self.config.is_file():
            raise ConfigError(f"{self.path} is not a run directory (no config.toml)")
        return config_from_dict(tomllib.loads(self.config.read_text(encoding="utf-8")))

    def write_config(self, config: Config) -> None:
        write_text_atomic(self.config, dump_config(config))

    def write_summary(self, summary: dict) -> None:
        write_text_atomic(self.summary, json.dumps(summary, indent=2) + "\n")

    def read_summary(self) -> dict | None:
        if not self.summary.is_file():
            return None
        return json.loads(self.summary.read_text(encoding="utf-8"))


def new_run_dir(out_dir: str | Path, name: str) -> RunDir:
    """A fresh ``out_dir/name``, or ``name-2``, ``name-3``... so a new run never overwrites one."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = root / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return RunDir(path)
        except FileExistsError:
            continue
    raise RuntimeError(f"too many runs named {name!r} in {root}")


def open_run_dir(path: str | Path) -> RunDir:
    """An existing run directory (a clear error if it is not one)."""
    run = RunDir(Path(path))
    if not run.config.is_file():
        raise ConfigError(f"{path} is not a run directory (no config.toml); "
                          "pass the folder `rnnreg train` printed, e.g. runs/quickstart")
    return run

