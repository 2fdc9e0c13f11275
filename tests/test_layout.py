"""The layout shows the architecture: a package imports only from the floors below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rnnreg"
# Bottom up; a package may import from any lower floor, never from its own floor's others or above.
FLOORS = [("kernels",), ("regularizers",), ("penalties", "data", "optim", "decoding"), ("layers",),
          ("models",), ("config",), ("tasks",), ("runs",), ("training",), ("cli",)]
LEVEL = {name: level for level, names in enumerate(FLOORS) for name in names}


def imported_packages(path: Path) -> set[str]:
    """The top-level rnnreg packages a module imports (relative or absolute)."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts[:-1])                      # the package holding the module (or __init__)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = parts[:len(parts) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [a.name for a in node.names][:1])
            found.add(target[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rnnreg."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("rnnreg.")}
    return found


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py")
                                        if p.relative_to(PACKAGE).parts[0] in LEVEL),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_package_imports_a_higher_one(path):
    own = path.relative_to(PACKAGE).parts[0]
    if own.endswith(".py"):
        own = own[:-3]
    above = {name for name in imported_packages(path) - {own} if LEVEL.get(name, -1) >= LEVEL[own]}
    assert not above, f"{own} (floor {LEVEL[own]}) imports {sorted(above)}"


def test_every_package_has_a_floor():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages.discard("presets")                       # package data: the TOML presets
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert packages | modules <= set(LEVEL), sorted((packages | modules) - set(LEVEL))
