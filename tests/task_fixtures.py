"""A small, learnable sequence task for testing the generic task loop on its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnreg.models.outputs import SequenceOutput
from rnnreg.tasks.base import check_split
from rnnreg.tasks.sequence_task import SequenceTask, batch_generator, split_generator


class SignOfSumTask(SequenceTask):
    """Is the sum of a noise sequence positive? Binary classification from the last step."""
    name, metric, higher_is_better = "sign-of-sum", "accuracy", True
    input_size, output_size, head = 1, 2, "last"

    def __init__(self, seq_len: int = 8, train_size: int = 256, valid_size: int = 128, seed: int = 0) -> None:
        self.seq_len, self.train_size, self.valid_size, self.seed = seq_len, train_size, valid_size, seed

    def _make(self, n: int, generator: torch.Generator) -> dict:
        x = torch.randn(self.seq_len, n, 1, generator=generator)  # (T, B, 1)
        return {"x": x, "y": (x.sum(dim=(0, 2)) > 0).long()}

    def num_train_batches(self, batch_size: int) -> int:
        return -(-self.train_size // batch_size)

    def train_batch(self, epoch: int, index: int, batch_size: int) -> dict:
        n = min(batch_size, self.train_size - index * batch_size)
        return self._make(n, batch_generator(self.seed, epoch, index))

    def eval_batches(self, split: str, batch_size: int):
        data = self._make(self.valid_size, split_generator(self.seed, check_split(split)))
        for i in range(0, self.valid_size, batch_size):
            yield {"x": data["x"][:, i:i + batch_size], "y": data["y"][i:i + batch_size]}

    def forward(self, model, batch) -> SequenceOutput:
        return model(batch["x"])

    def loss(self, output: SequenceOutput, batch) -> torch.Tensor:
        return F.cross_entropy(output.prediction, batch["y"])

    @torch.no_grad()
    def score(self, model, batches) -> dict[str, float]:
        total, right, n = 0.0, 0, 0
        for batch in batches:
            out = self.forward(model, batch)
            total += F.cross_entropy(out.prediction, batch["y"], reduction="sum").item()
            right += (out.prediction.argmax(-1) == batch["y"]).sum().item()
            n += batch["y"].numel()
        return {"loss": total / n, "accuracy": 100.0 * right / n}


def trained_adding_run(out, steps: int = 2):
    """A finished adding-problem run of ``steps`` steps in ``out``: a sequence-task run to read back."""
    from rnnreg.config import load_config
    from rnnreg.runs.run_dir import new_run_dir
    from rnnreg.training import train

    config = load_config("adding-quick", [f"train.out_dir={out}", f"train.max_steps={steps}", "task.seq_len=6",
                                          "task.train_size=8", "task.valid_size=4", "task.test_size=4",
                                          "data.batch_size=4", "model.hidden_size=4"])
    run = new_run_dir(out, config.name)
    run.write_config(config)
    train(config, run)
    return run
