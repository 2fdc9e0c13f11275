"""Language modelling as a task: BPTT windows over batched text, with the state carried along.

What sets it apart from the fixed-set sequence tasks, and lives here:

- **Windows, not examples.** The corpus is cut into B columns (``batchify``) and an epoch walks
  down the rows in windows whose lengths the :class:`~rnnreg.data.BPTTSchedule` draws (Merity et
  al. 2017, sec. 4.1); the step's learning rate is scaled by window length / bptt so that every
  token weighs the same. Under torchrun each rank takes a contiguous share of the columns.
- **The carried state.** Window k + 1 starts from window k's final state (the loop detaches it:
  truncated BPTT); an epoch starts from zeros (AWD-LSTM). The norm-stabilizer compares a window's first
  step with the state it came from.
- **Its metric** is a function of the loss: perplexity for words, bits per character for
  characters (:mod:`.lm_metrics`), evaluated with the state carried across evaluation windows,
  optionally with MC dropout; the run ends with a text sample, and, when asked, the best weights
  scored with the continuous cache pointer (:mod:`.cache_pointer`) and dynamic evaluation
  (:mod:`.dynamic_eval`) on one stream of text (:meth:`LanguageModelTask.text`).

The AWD-LSTM finetune stage is the loop's (it restarts any task from its best weights).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..data import BPTTSchedule, Corpus, batchify, get_batch, shard_columns
from .base import AllSum, Batch, ModelSpec, Task, check_split
from .cache_pointer import cache_pointer_nll
from .dynamic_eval import dynamic_evaluate, gradient_statistics
from .lm_evaluation import evaluate, evaluate_mc
from .lm_metrics import metric_fields, metric_value
from .text_sampling import sample_text


class LanguageModelTask(Task):
    """Next-token prediction on ``corpus``. metric: "ppl" or "bpc". bptt and the schedule
    arguments: as :class:`~rnnreg.data.BPTTSchedule` (``seed`` seeds its window lengths).
    sample_length / sample_temperature / sample_prime: the text sampled from the best weights at
    the end of a run (length 0: none). mc_samples: also report MC-dropout validation at the end.
    frequency_order: put the training split's frequency order of the words in the model spec (an
    adaptive softmax needs it). cache_* / dynamic*: the evaluation-time methods the end of a run
    applies to valid and test (``cache_window`` 0 and ``dynamic`` False: none), named and
    meant as :class:`rnnreg.config.schema.EvaluationConfig`'s fields."""
    name, unit, higher_is_better = "lm", "tokens", False

    def __init__(self, corpus: Corpus, *, metric: str, bptt: int, variable_bptt: bool = True,
                 bptt_p: float = 0.95, bptt_std: float = 5.0, min_bptt: int = 5, max_bptt_delta: int = 40,
                 seed: int = 0, sample_length: int = 0, sample_temperature: float = 1.0,
                 sample_prime: str = "", mc_samples: int = 0, frequency_order: bool = False,
                 cache_window: int = 0, cache_theta: float = 1.0, cache_lambda: float = 0.1, dynamic: bool = False,
                 dynamic_lr: float = 5e-5, dynamic_decay: float = 2e-3, dynamic_epsilon: float = 2e-5,
                 dynamic_bptt: int = 5, dynamic_batch_size: int = 100, dynamic_max_batches: int = 0) -> None:
        self.corpus, self.metric, self.bptt = corpus, metric, bptt
        self.schedule = BPTTSchedule(bptt, variable=variable_bptt, p=bptt_p, std=bptt_std, min_len=min_bptt,
                                     max_delta=max_bptt_delta, seed=seed)
        self.sample = {"length": sample_length, "temperature": sample_temperature, "prime": sample_prime}
        self.mc_samples, self.frequency_order = mc_samples, frequency_order
        self.cache = {"window": cache_window, "theta": cache_theta, "lambda": cache_lambda} if cache_window else None
        self.dynamic = {"lr": dynamic_lr, "decay": dynamic_decay, "epsilon": dynamic_epsilon, "bptt": dynamic_bptt,
                        "batch_size": dynamic_batch_size, "max_batches": dynamic_max_batches} if dynamic else None
        self._data: dict[str, Tensor] = {}

    def model_spec(self) -> ModelSpec:
        vocab = len(self.corpus.vocab)
        order = None
        if self.frequency_order:  # stable sort: ties keep first-seen order, so the order is a function of the text
            counts = torch.bincount(self.corpus.train, minlength=vocab)  # (V,)
            order = tuple(torch.sort(counts, descending=True, stable=True).indices.tolist())
        return ModelSpec(vocab, vocab, "lm", vocab=tuple(self.corpus.vocab.to_list()),
                         level=self.corpus.level, dataset=self.corpus.name, frequency_order=order)

    def describe(self) -> str:
        return (f"{self.corpus.name}: {self.corpus.train.numel():,} training tokens, "
                f"vocabulary {len(self.corpus.vocab):,}")

    def start(self, *, batch_size: int, eval_batch_size: int, test_batch_size: int,
              device: torch.device, rank: int = 0, world_size: int = 1, all_sum: AllSum | None = None) -> None:
        """(N, B) columns of each split on ``device``; each rank keeps a contiguous share of the
        training columns, and of the validation columns when their number divides evenly
        (otherwise every rank evaluates all of them: summing identical totals leaves the mean)."""
        train = self._columns("train", batch_size, "data.batch_size")
        valid = self._columns("valid", eval_batch_size, "data.eval_batch_size")
        self._sharded_valid = world_size > 1 and eval_batch_size % world_size == 0
        self._data = {"train": shard_columns(train, rank, world_size).to(device),
                      "valid": (shard_columns(valid, rank, world_size) if self._sharded_valid else valid).to(device),
                      "test": self._columns("test", test_batch_size, "data.test_batch_size").to(device)}
        self._all_sum, self._eval_batch_size = all_sum, eval_batch_size
        if self.dynamic:  # refused now, not at the end of the run
            self._columns("train", self.dynamic["batch_size"], "evaluation.dynamic_batch_size")

    def _columns(self, split: str, batch_size: int, setting: str) -> Tensor:
        """(N // B, B) columns of a split, or a ValueError that names the setting to change."""
        try:
            return batchify(getattr(self.corpus, split), batch_size)  # (N,) -> (N // B, B)
        except ValueError as err:
            raise ValueError(f"{self.corpus.name} {split} split: {err}; lower {setting}") from None

    def epoch_size(self) -> int:
        return self._data["train"].shape[0]

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, Batch]]:
        for i, seq_len in self.schedule.windows(self.epoch_size(), start=start):
            x, y = get_batch(self._data["train"], i, seq_len)  # (T, B_r), (T, B_r)
            yield i + x.shape[0], {"x": x, "y": y}

    def step(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[Any, Any]:
        # The targets go in so that an adaptive softmax scores them without forming (T, B, V) logits.
        out = model(batch["x"], carry, targets=batch["y"])
        return out, out.state

    def loss(self, output: Any, batch: Batch) -> Tensor:
        return output.nll.mean()  # (T, B) float32 -log p(target), whatever the model runs in

    def lr_scale(self, batch: Batch) -> float:
        return self.schedule.lr_scale(batch["x"].shape[0])

    def count(self, batch: Batch) -> int:
        return batch["y"].numel()

    def incoming_states(self, carry: Any) -> list | None:
        # A surprisal-zoneout model carries (layer states, last logits): the layers' part.
        return carry.hidden if hasattr(carry, "hidden") else carry

    def step_fields(self, batch: Batch, loss: float) -> dict[str, float]:
        return {"seq_len": batch["x"].shape[0], **metric_fields(loss, self.metric)}

    def evaluate(self, model: nn.Module, split: str, *, mc_samples: int = 0) -> dict[str, float]:
        data = self._data[check_split(split)]
        if mc_samples:
            loss = evaluate_mc(model, data, self.bptt, mc_samples)
        else:
            sharded = split == "valid" and self._sharded_valid
            loss = evaluate(model, data, self.bptt, all_sum=self._all_sum if sharded else None)
        return metric_fields(loss, self.metric)

    def example_batch(self, split: str, steps: int) -> Batch:
        """Eight parallel streams of ``split`` text, ``steps`` tokens each."""
        rows = batchify(getattr(self.corpus, check_split(split)), 8)[:steps + 1]  # (N,) -> (T + 1, 8)
        return {"x": rows[:-1], "y": rows[1:]}

    def text(self, split: str) -> Tensor:
        """(N, 1): ``split`` as one stream of text, on the data's device; the batch size of the
        cache pointer and of dynamic evaluation (Grave et al. 2016; Krause et al. 2017)."""
        device = self._data["test"].device if self._data else torch.device("cpu")
        return batchify(getattr(self.corpus, check_split(split)), 1).to(device)  # (N,) -> (N, 1)

    def finish(self, model: nn.Module, *, seed: int) -> dict[str, Any]:
        """MC-dropout validation (Gal & Ghahramani 2016), the cache pointer's and dynamic
        evaluation's valid and test scores with their settings, and a sample, from the best weights."""
        extras: dict[str, Any] = {}
        if self.mc_samples:  # all of the validation columns: only rank 0 finishes a run
            valid = self._columns("valid", self._eval_batch_size, "data.eval_batch_size").to(self._data["test"].device)
            loss = evaluate_mc(model, valid, self.bptt, self.mc_samples)
            extras["valid_mc"] = metric_fields(loss, self.metric)[self.metric]
        if self.cache:
            c = self.cache
            for split in ("valid", "test"):
                loss = cache_pointer_nll(model, self.text(split), window=c["window"], theta=c["theta"],
                                         lambda_=c["lambda"], bptt=self.bptt)
                extras[f"{split}_cache"] = metric_value(loss, self.metric)
            extras["cache"] = dict(c)
        if self.dynamic:
            extras.update(self._finish_dynamic(model))
        if self.sample["length"]:
            extras["sample"] = sample_text(model, self.corpus.vocab, self.corpus.level, prime=self.sample["prime"],
                                           length=self.sample["length"], temperature=self.sample["temperature"],
                                           seed=seed, dataset=self.corpus.name)
        return extras

    def _finish_dynamic(self, model: nn.Module) -> dict[str, Any]:
        """Dynamic evaluation (Krause et al. 2017) of valid and test, each from the trained
        weights, with MS_g from the training split in ``batch_size`` columns, as the authors."""
        d = self.dynamic
        train = self._columns("train", d["batch_size"], "evaluation.dynamic_batch_size")  # (N,) -> (N / B, B)
        stats = gradient_statistics(model, train.to(self._data["test"].device), bptt=d["bptt"],
                                    max_batches=d["max_batches"] or None)
        extras: dict[str, Any] = {"dynamic": dict(d)}
        for split in ("valid", "test"):
            loss = dynamic_evaluate(model, self.text(split), bptt=d["bptt"], lr=d["lr"], decay=d["decay"],
                                    epsilon=d["epsilon"], grad_stats=stats)
            extras[f"{split}_dynamic"] = metric_value(loss, self.metric)
        return extras

    def state_dict(self) -> dict[str, Any]:
        return {"bptt": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["bptt"])
