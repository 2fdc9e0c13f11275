"""TOML <-> Config: strict typed loading, dotted overrides, presets with ``base`` inheritance.

Strict means a misspelt key is an error that names the nearest valid key, never a silently
ignored setting, and a value of the wrong type is an error, never a string that looks like a
number (the PyYAML ``1e-6`` trap: TOML reads it as a float). A renamed key is an error in a file
or an override, which a person can fix, and is moved to its new name with a warning in a stored
run config (a checkpoint's or a run's ``config.toml``), so old runs still load.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import tomllib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from ..layers.options import OPTIONS, SINGLE_CELL_TASKS
from .kinds import applies, shown
from .schema import Config, ConfigError

PRESET_PACKAGE = "rnnreg.presets"
logger = logging.getLogger(__name__)
# (section, old key) -> (new key, what it means).
RENAMED = {("model", "dropout"): ("nonrecurrent_p", "Zaremba et al. 2014: dropout on every "
                                  "non-recurrent connection, fresh mask each step")}


def _renamed(section: str, key: str) -> str | None:
    """The one-line message for a renamed key, or None."""
    if (section, key) not in RENAMED:
        return None
    new, meaning = RENAMED[(section, key)]
    return f"{section}.{key} is now {section}.{new} ({meaning})"


def _refuse_renamed(table: dict, where: str) -> None:
    for section, part in table.items():
        for key in part if isinstance(part, dict) else ():
            message = _renamed(section, key)
            if message:
                raise ConfigError(f"{message}; rename it in {where}")


def _migrate(table: dict) -> dict:
    """A stored config's renamed keys moved to their new names (a new dict), each with a warning."""
    out = dict(table)
    for (section, old), (new, _) in RENAMED.items():
        part = out.get(section)
        if not isinstance(part, dict) or old not in part:
            continue
        part = dict(part)
        value = part.pop(old)
        if new in part and part[new] != value:
            raise ConfigError(f"{section}.{old} and {section}.{new} are one setting, given twice "
                              f"({value!r} and {part[new]!r})")
        part[new] = value
        out[section] = part
        logger.warning("stored config: %s; read as %s.%s = %r", _renamed(section, old), section, new, value)
    return out


def _nearest(word: str, candidates: Sequence[str], prefix: str = "", label: str = "valid keys") -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {prefix + close[0]!r}?)"
    return f" ({label}: {', '.join(prefix + c for c in candidates)})"


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert lists to tuples and ints to floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _convert(value, next(a for a in args if a is not type(None)), where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return _build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        items = args if args and args[-1] is not Ellipsis else (args[0],) * len(value)
        if len(items) != len(value):
            raise ConfigError(f"{where} must have {len(items)} entries, got {len(value)}")
        return tuple(_convert(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(value, items)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{where} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, table: dict, where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in table.items():
        dotted = f"{where}.{key}" if where else key
        if key not in hints:
            raise ConfigError(f"unknown key {dotted!r}{_nearest(key, names, f'{where}.' if where else '')}")
        kwargs[key] = _convert(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where or 'config'}: {err}") from None


def config_from_dict(table: dict) -> Config:
    """A Config from a plain nested dict (as read from TOML, or stored with a run), strictly
    checked; a stored config's renamed keys are read under their new names, with a warning."""
    return _build(Config, _migrate(table))


def config_to_dict(config: Config) -> dict:
    """Plain nested dict of the config (TOML-writable: ``None`` values are left out)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value
    return strip(dataclasses.asdict(config))


def _parse_value(text: str) -> Any:
    """A TOML literal (``0.5``, ``true``, ``[1, 2]``, ``"x"``); anything else is a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(table: dict, overrides: Sequence[str]) -> dict:
    """Apply ``section.key=value`` strings to a nested dict (returns a new dict)."""
    merged = _merge({}, table)
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        parts = key.split(".")
        if len(parts) == 2 and _renamed(*parts):
            raise ConfigError(f"{_renamed(*parts)}; rename the override")
        if parts[0] not in sections:
            raise ConfigError(f"unknown key {key!r}{_nearest(parts[0], list(sections))}")
        node = merged
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(text.strip())
    return merged


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def preset_names() -> list[str]:
    """Every preset shipped in the package, sorted."""
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """The TOML source of a shipped preset."""
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r}{_nearest(name, preset_names(), label='presets')}")
    return resources.files(PRESET_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8")


def _read_text(path: Path) -> str:
    """A config file's text; an unreadable or non-text file is a ConfigError, not a traceback."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not a UTF-8 text file (byte {err.start}: {err.reason}); "
                          "a config is TOML text") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None


def _read_chain(source: str, seen: tuple[str, ...] = ()) -> tuple[dict, bool]:
    """A preset name or a TOML file, with ``base = "preset"`` resolved recursively; and whether
    the chain ends in a shipped preset (False: in a user file that names no base)."""
    path = Path(source)
    if source.endswith(".toml"):
        if not path.is_file():
            raise ConfigError(f"config file {source} does not exist")
        text, label = _read_text(path), str(path)
    else:
        text, label = preset_text(source), source
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{label} is not valid TOML: {err}") from None
    _refuse_renamed(table, label)
    base = table.pop("base", None)
    if base is None:
        return table, not source.endswith(".toml")
    if base in seen:
        raise ConfigError(f"preset inheritance loops through {base!r}")
    parent, rooted = _read_chain(base, seen + (label,))
    return _merge(parent, table), rooted


# A file without ``base`` starts from the quickstart's model, optimizer and budget (the schema's
# own defaults are AWD-LSTM's 3 x 1150 with no time limit: hours per epoch on a CPU), less what
# describes the quickstart itself rather than its model: its description, dataset, metric and
# the sample's prime ("ROMEO:").
DEFAULT_BASE = "quickstart"
_NOT_INHERITED = ("expect", "data.dataset", "train.sample_prime")


def _default_base(table: dict, overrides: Sequence[str]) -> dict:
    """DEFAULT_BASE's settings that apply to the task kind and cell ``table`` and ``overrides``
    ask for (an adding-problem file gets the quickstart's model and budget, not its BPTT
    windows; a Clockwork RNN not the LSTM's weight drop, and one layer)."""
    asked = apply_overrides(table, overrides)
    task, model = asked.get("task"), asked.get("model")
    kind = task.get("kind", "lm") if isinstance(task, dict) else "lm"
    base = {section: {k: v for k, v in values.items() if f"{section}.{k}" not in _NOT_INHERITED
                      and applies(f"{section}.{k}", str(kind))}
            for section, values in _read_chain(DEFAULT_BASE)[0].items()
            if section not in _NOT_INHERITED and isinstance(values, dict)}   # not the description
    cell = str(model.get("cell", base["model"]["cell"]) if isinstance(model, dict) else base["model"]["cell"])
    base["model"] = {k: v for k, v in base["model"].items() if k not in OPTIONS or cell in OPTIONS[k].cells}
    if cell in SINGLE_CELL_TASKS:
        base["model"]["num_layers"] = 1
    return base


def load_config(source: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """The config named by ``source`` (preset name, or a ``.toml`` file; None: ``quickstart``),
    with ``section.key=value`` overrides applied. A preset's ``name`` defaults to its file name.
    A file that names no ``base`` starts from the quickstart's model and budget
    (:data:`DEFAULT_BASE`), not from the schema's AWD-sized defaults."""
    source = source or "quickstart"
    table, rooted = _read_chain(source)
    if not rooted:
        logger.info("%s names no base: starting from the %s preset's model and budget", source, DEFAULT_BASE)
        table = _merge(_default_base(table, overrides), table)
    table.setdefault("name", Path(source).stem if source.endswith(".toml") else source)
    return config_from_dict(apply_overrides(table, overrides))


def dump_config(config: Config) -> str:
    """The config as TOML, without the settings its task kind or its cell do not read
    (:mod:`.kinds`): those are at their defaults, so reading the text back gives ``config``."""
    import tomli_w

    table = config_to_dict(config)
    for section, values in list(table.items()):
        if isinstance(values, dict):
            table[section] = {k: v for k, v in values.items() if shown(f"{section}.{k}", config)}
            if values and not table[section]:       # a section none of whose settings apply (no "[evaluation]")
                del table[section]
    return tomli_w.dumps(table)
