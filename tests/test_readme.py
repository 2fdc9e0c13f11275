"""The README's Python examples run as written: each block on its own, in a fresh namespace
(nothing defined for it), in an empty working folder (what it writes goes there)."""

import re
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # runs every README example, a short training run included: ~30 s

README = Path(__file__).resolve().parent.parent / "README.md"
# A block that cannot run here says why in this comment on the line before its ``` fence.
SKIP = "<!-- not run by tests/test_readme.py:"


def python_blocks() -> list[tuple[str, str, bool]]:
    """(id: the section heading and the block's number in it, code, skipped) for every ```python block."""
    blocks, heading, count = [], "top", 0
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading, count = line.lstrip("# ").strip(), 0
        elif line.strip() == "```python":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            count += 1
            skipped = i > 0 and lines[i - 1].strip().startswith(SKIP)
            blocks.append((f"{heading} #{count}", "\n".join(lines[i + 1:end]) + "\n", skipped))
            i = end
        i += 1
    return blocks


BLOCKS = python_blocks()


def test_every_block_is_found():
    assert len(BLOCKS) >= 6
    assert len(BLOCKS) == len(re.findall(r"^```python$", README.read_text(encoding="utf-8"), flags=re.M))


@pytest.mark.parametrize("name, code, skipped", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_readme_python_block_runs_as_written(name, code, skipped, tmp_path, monkeypatch):
    if skipped:
        pytest.skip("the README says why it is not run here")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace = {"__name__": "__readme__"}           # nothing else: a block defines what it uses
    exec(compile(code, f"{README}: {name}", "exec"), namespace)


def test_the_layout_section_names_every_module():
    """README's Layout block lists each package's modules: a module added or removed without
    updating it fails here."""
    layout = README.read_text().split("## Layout", 1)[1].split("```", 2)[1]
    package = README.parent / "src" / "rnnreg"
    for path in package.rglob("*.py"):
        if path.stem in ("__init__", "__main__"):
            continue
        folder = path.relative_to(package).parts[0]
        line = next((i for i, row in enumerate(layout.splitlines()) if row.strip().startswith(
            f"{folder}/" if folder != path.name else path.name)), None)
        assert line is not None, f"no Layout line for {folder}"
        assert re.search(rf"\b{path.stem}\b", layout), f"{path.relative_to(package)} is not in the Layout"
