"""A trained model back from its run directory (weights, config and the task's model spec, no
pickles), evaluated on a split, sampled from, or run on a batch to look at its hidden states.

The model is rebuilt from the stored config and :class:`~rnnreg.tasks.base.ModelSpec` alone, so
sampling text needs no data; evaluating builds the task (its data) from the config, with any
overrides (``data.path=...`` when the data moved, ``task.beam_size=8`` to decode differently),
and refuses data that does not match the spec the model was trained on (another vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import Config, apply_overrides, config_from_dict
from ..data.vocab import Vocabulary
from ..tasks.base import ModelSpec, Task
from ..tasks.build import build_model, build_task
from ..tasks.text_sampling import sample_text
from .checkpoint import load_checkpoint
from .run_dir import RunDir


class DataMismatch(ValueError):
    """The data given to a trained model is not the data it was trained on (its vocabulary, its
    sizes), so its numbers would mean nothing."""


@dataclass(frozen=True)
class TrainedRun:
    """config: the stored config with the overrides applied. model: in eval mode."""
    config: Config
    spec: ModelSpec
    model: nn.Module

    def task(self, device: str | torch.device = "cpu", *, batch_size: int | None = None) -> Task:
        """The run's task with its data, ready to evaluate (``batch_size``: for every split)."""
        d = self.config.data
        task = build_task(self.config)
        differences = task.model_spec().differences(self.spec)
        if differences:
            raise DataMismatch(f"the data's {', '.join(differences)} does not match the model's "
                               f"(trained on {self.spec.dataset or self.config.task.kind})")
        task.start(batch_size=d.batch_size, eval_batch_size=batch_size or d.eval_batch_size,
                   test_batch_size=batch_size or d.test_batch_size, device=torch.device(device))
        return task

    def evaluate(self, split: str, *, batch_size: int | None = None,
                 mc_samples: int = 0) -> tuple[str, dict[str, float]]:
        """The task's headline metric and its scores of the model on ``split`` (MC dropout with
        ``mc_samples``, where the task has it)."""
        task = self.task(batch_size=batch_size)
        return task.metric, task.evaluate(self.model, split, mc_samples=mc_samples)

    def sample(self, *, prime: str = "", length: int = 300, temperature: float = 1.0, top_k: int = 0,
               seed: int | None = None) -> str:
        """Text from a language model."""
        if self.spec.vocab is None:
            raise DataMismatch(f"a {self.config.task.kind!r} model does not generate text")
        vocab = Vocabulary.from_list(list(self.spec.vocab))
        return sample_text(self.model, vocab, self.spec.level, prime=prime, length=length,
                           temperature=temperature, top_k=top_k, seed=seed, dataset=self.spec.dataset)

    @torch.no_grad()
    def hidden_states(self, steps: int) -> tuple[list[Tensor], Tensor | None]:
        """Every layer's (T, B, H_l) hidden sequence on the start of the validation split (up to
        ``steps`` time steps), and the (B,) real lengths of a padded batch (else None)."""
        task = self.task()
        batch = task.example_batch("valid", steps)
        out, _ = task.step(self.model, batch, None)
        return [h[:steps] for h in out.raw], task.lengths(batch)


def load_trained(run: RunDir, *, which: str = "best", overrides: tuple[str, ...] = (),
                 device: str | torch.device = "cpu") -> TrainedRun:
    """The model of ``run`` with its best (``which="best"``) or latest (``"last"``) weights."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    ckpt = load_checkpoint(run.best if which == "best" else run.last, map_location=device)
    config = config_from_dict(apply_overrides(ckpt["config"], overrides))
    spec = _spec(ckpt, config)
    model = build_model(config, spec).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return TrainedRun(config, spec, model)


def _spec(ckpt: dict, config: Config) -> ModelSpec:
    """The checkpoint's model spec; checkpoints of rnnreg 0.1 stored a language model's
    vocabulary beside the weights, and a task's sizes not at all (its task tells them)."""
    if "spec" in ckpt:
        return ModelSpec.from_dict(ckpt["spec"])
    if "vocab" in ckpt:
        vocab = tuple(ckpt["vocab"])
        return ModelSpec(len(vocab), len(vocab), "lm", vocab=vocab, level=ckpt.get("level", "word"),
                         dataset=ckpt.get("dataset", config.data.dataset))
    return build_task(config).model_spec()

