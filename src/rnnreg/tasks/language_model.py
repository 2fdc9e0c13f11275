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
  optionally with MC dropout; the run ends with a text sample.

The AWD-LSTM finetune stage is the loop's (it restarts any task from its best weights).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import BPTTSchedule, Corpus, batchify, get_batch, shard_columns
from .base import AllSum, Batch, ModelSpec, Task, check_split
from .lm_evaluation import evaluate, evaluate_mc
from .lm_metrics import metric_fields
from .text_sampling import sample_text


class LanguageModelTask(Task):
    """Next-token prediction on ``corpus``. metric: "ppl" or "bpc". bptt and the schedule
    arguments: as :class:`~rnnreg.data.BPTTSchedule` (``seed`` seeds its window lengths).
    sample_length / sample_temperature / sample_prime: the text sampled from the best weights at
    the end of a run (length 0: none). mc_samples: also report MC-dropout validation at the end."""
    name, unit, higher_is_better = "lm", "tokens", False

    def __init__(self, corpus: Corpus, *, metric: str, bptt: int, variable_bptt: bool = True,
                 bptt_p: float = 0.95, bptt_std: float = 5.0, min_bptt: int = 5, max_bptt_delta: int = 40,
                 seed: int = 0, sample_length: int = 0, sample_temperature: float = 1.0,
                 sample_prime: str = "", mc_samples: int = 0) -> None:
        self.corpus, self.metric, self.bptt = corpus, metric, bptt
        self.schedule = BPTTSchedule(bptt, variable=variable_bptt, p=bptt_p, std=bptt_std, min_len=min_bptt,
                                     max_delta=max_bptt_delta, seed=seed)
        self.sample = {"length": sample_length, "temperature": sample_temperature, "prime": sample_prime}
        self.mc_samples = mc_samples
        self._data: dict[str, Tensor] = {}

    def model_spec(self) -> ModelSpec:
        vocab = len(self.corpus.vocab)
        return ModelSpec(vocab, vocab, "lm", vocab=tuple(self.corpus.vocab.to_list()),
                         level=self.corpus.level, dataset=self.corpus.name)

    def describe(self) -> str:
        return (f"{self.corpus.name}: {self.corpus.train.numel():,} training tokens, "
                f"vocabulary {len(self.corpus.vocab):,}")

    def start(self, *, batch_size: int, eval_batch_size: int, test_batch_size: int,
              device: torch.device, rank: int = 0, world_size: int = 1, all_sum: AllSum | None = None) -> None:
        """(N, B) columns of each split on ``device``; each rank keeps a contiguous share of the
        training columns, and of the validation columns when their number divides evenly
        (otherwise every rank evaluates all of them: summing identical totals leaves the mean)."""
        train = self._columns("train", batch_size, "batch_size")
        valid = self._columns("valid", eval_batch_size, "eval_batch_size")
        self._sharded_valid = world_size > 1 and eval_batch_size % world_size == 0
        self._data = {"train": shard_columns(train, rank, world_size).to(device),
                      "valid": (shard_columns(valid, rank, world_size) if self._sharded_valid else valid).to(device),
                      "test": self._columns("test", test_batch_size, "test_batch_size").to(device)}
        self._all_sum, self._eval_batch_size = all_sum, eval_batch_size

    def _columns(self, split: str, batch_size: int, setting: str) -> Tensor:
        """(N // B, B) columns of a split, or a ValueError that names the setting to change."""
        try:
            return batchify(getattr(self.corpus, split), batch_size)  # (N,) -> (N // B, B)
        except ValueError as err:
            raise ValueError(f"{self.corpus.name} {split} split: {err}; lower data.{setting}") from None

    def epoch_size(self) -> int:
        return self._data["train"].shape[0]

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, Batch]]:
        for i, seq_len in self.schedule.windows(self.epoch_size(), start=start):
            x, y = get_batch(self._data["train"], i, seq_len)  # (T, B_r), (T, B_r)
            yield i + x.shape[0], {"x": x, "y": y}

    def step(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[Any, Any]:
        out = model(batch["x"], carry)
        return out, out.state

    def loss(self, output: Any, batch: Batch) -> Tensor:
        logits = output.logits.float()  # the loss in float32 whatever the model runs in
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["y"].reshape(-1))  # (T*B, V) vs (T*B,)

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

    def finish(self, model: nn.Module, *, seed: int) -> dict[str, Any]:
        """MC-dropout validation (Gal & Ghahramani 2016) and a sample from the best weights."""
        extras: dict[str, Any] = {}
        if self.mc_samples:  # all of the validation columns: only rank 0 finishes a run
            valid = self._columns("valid", self._eval_batch_size, "eval_batch_size").to(self._data["test"].device)
            loss = evaluate_mc(model, valid, self.bptt, self.mc_samples)
            extras["valid_mc"] = metric_fields(loss, self.metric)[self.metric]
        if self.sample["length"]:
            extras["sample"] = sample_text(model, self.corpus.vocab, self.corpus.level, prime=self.sample["prime"],
                                           length=self.sample["length"], temperature=self.sample["temperature"],
                                           seed=seed, dataset=self.corpus.name)
        return extras

    def state_dict(self) -> dict[str, Any]:
        return {"bptt": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["bptt"])
