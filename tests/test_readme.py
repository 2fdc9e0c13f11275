"""The README's Python examples run as written (with small stand-ins for the caller's tensors)."""

import re
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # runs every README example: ~13 s

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Dropout(0.3))
    namespace = {
        # what the snippets assume the caller already has
        "x_t": torch.randn(1, 3, 64), "state": None, "x_t_ids": torch.tensor([1, 2, 3]),
        "prev_logits": torch.randn(3, 50), "ce": torch.tensor(0.0), "model": model,
    }
    for block in blocks:
        if "mc_predict" in block:
            namespace["x"] = torch.randn(4, 10)
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["out"] is not None


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
