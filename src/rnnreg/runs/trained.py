"""A trained model back from its run directory (weights, config and the task's model spec, no
pickles), evaluated on a split (plainly, or a language model with the continuous cache pointer or
dynamic evaluation, tuned on the validation split if asked), sampled from, or run on a batch to
look at its hidden states.

The model is rebuilt from the stored config and :class:`~rnnreg.tasks.base.ModelSpec` alone, so
sampling text needs no data; evaluating builds the task (its data) from the config, with any
overrides (``data.path=...`` when the data moved, ``task.beam_size=8`` to decode differently),
and refuses data that does not match the spec the model was trained on (another vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..config import Config, apply_overrides, config_from_dict
from ..data.batching import batchify
from ..data.vocab import Vocabulary
from ..tasks.base import ModelSpec, Task
from ..tasks.build import build_model, build_task
from ..tasks.cache_pointer import Progress, cache_pointer_scores
from ..tasks.cache_search import search_cache
from ..tasks.dynamic_eval import dynamic_evaluate, gradient_statistics, paper_grid, search_dynamic
from ..tasks.lm_evaluation import evaluate
from ..tasks.text_sampling import sample_text
from .checkpoint import load_checkpoint
from .run_dir import RunDir


class DataMismatch(ValueError):
    """The data given to a trained model is not the data it was trained on (its vocabulary, its
    sizes), so its numbers would mean nothing."""


Stages = Callable[[str], Progress | None]   # a stage's name -> its progress(done, total), or None


@dataclass(frozen=True)
class MethodScores:
    """An evaluation-time method's mean NLL (``loss``, nats per token) on ``split`` and the
    model's own on the same stream of text (``plain``, batch size 1), under ``metric``; the
    ``settings`` used, and the validation grid they were chosen from when searched."""
    method: str
    split: str
    metric: str
    loss: float
    plain: float
    settings: dict[str, Any]
    search: dict[tuple[float, float], float] | None = None
    search_plain: float | None = None     # the model's own NLL on the searched (validation) text


@dataclass(frozen=True)
class TrainedRun:
    """config: the stored config with the overrides applied. model: in eval mode. step: the
    training step the weights were saved at (None in checkpoints that do not say)."""
    config: Config
    spec: ModelSpec
    model: nn.Module
    step: int | None = field(default=None, compare=False)
    _lm: dict = field(default_factory=dict, compare=False, repr=False)   # the LM task, read once

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
        task = self.task(next(self.model.parameters()).device, batch_size=batch_size)
        return task.metric, task.evaluate(self.model, split, mc_samples=mc_samples)

    def lm_task(self) -> Task:
        """The language-model task, its data on the model's device, read once (DataMismatch for
        other kinds)."""
        if self.spec.head != "lm":
            raise DataMismatch(f"a {self.config.task.kind!r} run has no text to read as one stream; the cache "
                               "pointer and dynamic evaluation are for language models")
        if "task" not in self._lm:
            self._lm["task"] = self.task(next(self.model.parameters()).device)
        return self._lm["task"]

    def evaluate_cache(self, split: str, *, window: int, theta: float, lambda_: float, search: bool = False,
                       stages: Stages = lambda name: None) -> MethodScores:
        """The continuous cache pointer (:mod:`rnnreg.tasks.cache_pointer`) on ``split``, with
        ``theta`` / ``lambda_``, or (``search``) the pair of the grid best on the validation split."""
        task, grid = self.lm_task(), None
        if search:
            found = search_cache(self.model, task.text("valid"), window=window, bptt=task.bptt,
                                 progress=stages("cache search on valid"))
            theta, lambda_, grid = found.theta, found.lambda_, found.scores
            if split == "valid":          # the search scored it already
                return MethodScores("cache", split, task.metric, found.loss, found.plain,
                                    _cache_settings(window, theta, lambda_), grid, found.plain)
        scored = cache_pointer_scores(self.model, task.text(split), window=window, thetas=(theta,),
                                      lambdas=(lambda_,), bptt=task.bptt, progress=stages(f"cache on {split}"))
        return MethodScores("cache", split, task.metric, scored.cache[(float(theta), float(lambda_))], scored.plain,
                            _cache_settings(window, theta, lambda_), grid, found.plain if search else None)

    def evaluate_dynamic(self, split: str, *, lr: float, decay: float, epsilon: float, bptt: int, batch_size: int,
                         max_batches: int = 0, search: bool = False,
                         stages: Stages = lambda name: None) -> MethodScores:
        """Dynamic evaluation (:mod:`rnnreg.tasks.dynamic_eval`) of ``split`` as one stream, MS_g
        from the training split in ``batch_size`` columns (``max_batches`` windows, 0: all); with
        ``search``, lr and decay from the authors' grid, best on the validation split."""
        task, grid, valid_plain = self.lm_task(), None, None
        device = next(self.model.parameters()).device
        train = batchify(task.corpus.train, batch_size).to(device)  # (N,) -> (N / B, B)
        stats = gradient_statistics(self.model, train, bptt=bptt, max_batches=max_batches or None,
                                    progress=stages("gradient statistics on train"))
        if search:
            lrs, decays = paper_grid(bptt)
            lr, decay, grid = search_dynamic(self.model, task.text("valid"), stats, bptt=bptt, lrs=lrs,
                                             decays=decays, epsilon=epsilon, progress=stages("dynamic search on valid"))
            valid_plain = evaluate(self.model, task.text("valid"), task.bptt)
        settings = {"lr": lr, "decay": decay, "epsilon": epsilon, "bptt": bptt, "batch_size": batch_size,
                    "max_batches": max_batches}
        text = task.text(split)
        loss = grid[(lr, decay)] if grid and split == "valid" else dynamic_evaluate(
            self.model, text, bptt=bptt, lr=lr, decay=decay, epsilon=epsilon, grad_stats=stats,
            progress=stages(f"dynamic on {split}"))
        plain = valid_plain if valid_plain is not None and split == "valid" else evaluate(self.model, text, task.bptt)
        return MethodScores("dynamic", split, task.metric, loss, plain, settings, grid, valid_plain)

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
    step = ckpt.get("step", (ckpt.get("state") or {}).get("step"))  # best.pt says; last.pt in its state
    return TrainedRun(config, spec, model, step if isinstance(step, int) else None)


def _cache_settings(window: int, theta: float, lambda_: float) -> dict[str, Any]:
    return {"window": window, "theta": theta, "lambda": lambda_}


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

