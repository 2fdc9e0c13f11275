"""A run directory: what one training run writes, under names every command agrees on.

    runs/<name>/config.toml     the resolved config (what ``rnnreg train`` was given, overrides applied)
    runs/<name>/metrics.jsonl   step / eval / epoch / event records (rnnreg.runs.metrics)
    runs/<name>/summary.json    final numbers and status, for ``rnnreg report``
    runs/<name>/last.pt         the latest checkpoint (resume from here); last.pt.prev before it
    runs/<name>/best.pt         the weights with the best validation loss
    runs/<name>/sample.txt      text generated at the end of training
    runs/<name>/plots/          ``rnnreg plot`` output
    runs/<name>/.lock           held by the one process training the run (rnnreg.runs.lock)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .atomic_text import write_text_atomic
from .checkpoint import CheckpointError, load_checkpoint
from ..config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict, dump_config

# What ``--resume`` may change: budgets, how often and where outputs go, where the data lives and
# what runs it. Anything else would continue the checkpoint under a config.toml that no longer
# says how its weights were trained.
RESUME_SETTINGS = ("train.epochs", "train.max_steps", "train.max_minutes", "train.finetune_epochs",
                   "train.log_every", "train.eval_every", "train.checkpoint_every", "train.tensorboard",
                   "train.threads", "train.device", "data.path", "data.cache_dir")


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

    def finished_summary(self) -> dict | None:
        """The summary of a run that has finished (final evaluation done), else None. The summary
        is written last and atomically, so "finished" here means every final record is on disk."""
        try:
            summary = self.read_summary()
        except ValueError:                              # not JSON: not a finished run's summary
            return None
        return summary if isinstance(summary, dict) and summary.get("status") == "finished" else None

    def resume_config(self, overrides: list[str]) -> Config:
        """The stored config with ``overrides`` applied, where each changes only a setting of
        ``RESUME_SETTINGS`` (a ConfigError naming the others), and config.toml itself as the last
        checkpoint (read here) was trained under, budgets and outputs apart."""
        config = self.read_config()
        mismatch = self._edited_since_checkpoint(config)  # refused before anything is locked
        if mismatch:
            raise ConfigError(mismatch)
        if not overrides:
            return config
        new_config = config_from_dict(apply_overrides(config_to_dict(config), overrides))
        refused = changed_settings(config_to_dict(config), config_to_dict(new_config))
        if refused:
            raise ConfigError(f"--resume can change only budgets and outputs ({', '.join(RESUME_SETTINGS)}), "
                              f"not {', '.join(refused)}; start a new run for that")
        return new_config

    def _edited_since_checkpoint(self, config: Config) -> str | None:
        """:func:`trained_config_mismatch` against the last checkpoint (or its ``.prev``), which it
        reads whole; None where there is none to read, or one of an older format: the loop refuses
        those with its own message."""
        try:
            ckpt = load_checkpoint(self.last)
        except CheckpointError:
            return None
        if ckpt.get("format") != "rnnreg-run" or not isinstance(ckpt.get("config"), dict):
            return None
        return trained_config_mismatch(ckpt["config"], config)

    def rewind_metrics(self, records: int) -> int:
        """Keep the first ``records`` lines of metrics.jsonl, what was logged up to the checkpoint a
        run resumes from (a partial last line goes too). Returns how many lines were dropped;
        the file is rewritten, atomically, only when there is something to drop."""
        if not self.metrics.exists():
            return 0
        lines = self.metrics.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines[:records] if line.endswith(b"\n")]
        if len(kept) == len(lines):
            return 0
        write_text_atomic(self.metrics, b"".join(kept).decode("utf-8"))
        return len(lines) - len(kept)


def trained_config_mismatch(stored: dict, config: Config) -> str | None:
    """Why a checkpoint saved under ``stored`` (its ``config_to_dict``) cannot be resumed as
    ``config``, in one line, or None: settings beyond budgets and outputs changed since (config.toml
    edited by hand, say to another ``train.precision``, would go on as a run it never was)."""
    old, new = _flat(stored), _flat(config_to_dict(config))
    # Settings both know: one added since is its default in the checkpoint's run, one removed
    # since can no longer be set.
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k] and k not in RESUME_SETTINGS)
    if not changed:
        return None
    return (f"config.toml no longer says how the checkpoint was trained: {', '.join(changed)} changed "
            f"since (a resume may change only {', '.join(RESUME_SETTINGS)}); put them back, or start a new run")


def changed_settings(old: dict, new: dict) -> list[str]:
    """The dotted names of the settings (outside ``RESUME_SETTINGS``) whose values differ between
    two configs as ``config_to_dict`` gives them, sorted."""
    old, new = _flat(old), _flat(new)
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUME_SETTINGS)


def _flat(table: dict, prefix: str = "") -> dict:
    """``{"train": {"epochs": 2}}`` -> ``{"train.epochs": 2}``."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


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

