"""The README's Python examples run as written (with small stand-ins for the caller's tensors)."""

import re
from pathlib import Path

import torch

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
