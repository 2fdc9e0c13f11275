"""Where a run's numbers come from: code, machine, data and how the run differs from its preset.

``collect_provenance`` builds the ``"provenance"`` object of a run's ``summary.json``; the report
(``runs/report.py``) reads it to tell a reproduction of a preset from a modified or partial run.
Pure: it reads files and torch's state, prints and writes nothing.
"""

from __future__ import annotations

import hashlib
import platform
import re
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from ..config import Config, ConfigError, config_to_dict, load_config, preset_names

# Settings that say where data and outputs live or which hardware runs, not what is trained.
IGNORED_KEYS = frozenset({"data.path", "data.cache_dir", "data.download", "train.device", "train.threads",
                          "train.out_dir"})
_SPLIT_PART = re.compile(r"^(.*) \((?:train|valid|test) part\)$")  # one file cut into three splits


def collect_provenance(config: Config, *, task: Any, status: str, epochs: int, steps: int, wall_s: float,
                       device: torch.device, budget_spent: bool) -> dict:
    """The provenance of a run that ended with ``status`` after ``epochs`` / ``steps``.

    ``budget_spent``: the loop stopped on ``train.max_steps`` / ``train.max_minutes``."""
    preset = _preset(config.name)
    stopped = stopped_by(config, status=status, steps=steps, wall_s=wall_s, budget_spent=budget_spent)
    preset_epochs = preset.train.epochs if preset is not None else None
    return {
        "rnnreg": _version(), "git_commit": git_commit(Path(__file__).resolve().parent),
        "python": platform.python_version(), "torch": torch.__version__,
        "device": str(device), "device_name": device_name(device), "threads": torch.get_num_threads(),
        "dataset": _dataset_name(config, task), "data_sha256": data_checksums(task),
        "preset": preset.name if preset is not None else None,
        "config_diff": config_diff(config, preset) if preset is not None else None,
        "stopped_by": stopped,
        "epochs": epochs, "steps": steps, "preset_epochs": preset_epochs,
        # the run's schedule ended as the preset's does: all its epochs, or the preset's early
        # stopping (fewer epochs only count if the run was allowed the preset's number)
        "full_schedule": bool(preset is not None and status == "finished" and stopped is None
                              and (epochs >= preset_epochs
                                   or (preset.train.patience > 0 and config.train.epochs >= preset_epochs))),
        "wall_s": round(wall_s, 1), "peak_memory": peak_memory(device)}


def stopped_by(config: Config, *, status: str, steps: int, wall_s: float, budget_spent: bool) -> str | None:
    """"signal" (a stop request), "max_steps" / "max_minutes" (the budget ended training), or None.

    A resumed run whose budget had already ended it does not see ``budget_spent`` again: its
    state (steps, training time) says the same."""
    if status == "stopped":
        return "signal"
    if status != "finished":
        return None
    steps_out = bool(config.train.max_steps and steps >= config.train.max_steps)
    minutes_out = bool(config.train.max_minutes and wall_s >= 60 * config.train.max_minutes)
    if not (budget_spent or steps_out or minutes_out):
        return None
    return "max_steps" if steps_out or not minutes_out else "max_minutes"


def _preset(name: str) -> Config | None:
    if name not in preset_names():
        return None
    try:
        return load_config(name)
    except ConfigError:
        return None


def _flat(table: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_diff(config: Config, preset: Config) -> dict[str, str]:
    """``{"section.key": "preset value -> run value"}`` for every setting the run changed, leaving
    out where data and outputs live and the hardware (:data:`IGNORED_KEYS`)."""
    ours, theirs = _flat(config_to_dict(config)), _flat(config_to_dict(preset))
    return {key: f"{theirs.get(key)!r} -> {ours.get(key)!r}" for key in sorted(set(ours) | set(theirs))
            if key not in IGNORED_KEYS and ours.get(key) != theirs.get(key)}


def git_commit(start: Path) -> str | None:
    """The commit checked out in the git repository holding ``start``, read from ``.git``; None
    outside one (an installed package) or if it cannot be read."""
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.exists():
            return _head_commit(dot_git)
    return None


def _head_commit(dot_git: Path) -> str | None:
    try:
        if dot_git.is_file():                         # a worktree or submodule: "gitdir: PATH"
            target = dot_git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
            dot_git = (dot_git.parent / target).resolve()
        head = (dot_git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None                       # detached HEAD
        ref = head[4:].strip()
        common = dot_git
        if (dot_git / "commondir").exists():          # a worktree's branches live in the main .git
            common = (dot_git / (dot_git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for base in (dot_git, common):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except (OSError, UnicodeDecodeError):
        return None                                   # an unreadable .git: the commit is unknown
    return None


def device_name(device: torch.device) -> str:
    """The CUDA device's name, or the CPU model (``/proc/cpuinfo``, else ``platform.processor``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:                                   # no /proc (not Linux): ask platform instead
        pass
    return platform.processor() or platform.machine() or "unknown"


def peak_memory(device: torch.device) -> dict[str, int | None]:
    """The process's peak resident memory in bytes (``ru_maxrss``: KiB on Linux, bytes on macOS)
    and, on CUDA, the peak memory torch allocated on the device."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"max_rss_bytes": int(rss if sys.platform == "darwin" else rss * 1024), "cuda_max_allocated_bytes": cuda}


def _dataset_name(config: Config, task: Any) -> str:
    corpus = getattr(task, "corpus", None)
    return getattr(corpus, "name", None) or str(config.data.dataset if config.task.kind == "lm" else config.task.kind)


def data_checksums(task: Any) -> dict[str, str] | None:
    """SHA-256 of the files a language model's corpus was read from (``Corpus.sources``) that
    exist; None for tasks whose files the run does not know."""
    sources = getattr(getattr(task, "corpus", None), "sources", None)
    if not sources:
        return None
    sums: dict[str, str] = {}
    for source in sources:
        match = _SPLIT_PART.match(source)
        path = Path(match.group(1) if match else source)
        if str(path) not in sums and path.is_file():
            sums[str(path)] = _sha256(path)
    return sums or None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version() -> str:
    from .. import __version__                        # the package root, not a floor

    return __version__
