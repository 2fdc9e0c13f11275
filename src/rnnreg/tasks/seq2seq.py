"""Seq2SeqTask: copy, reverse or add strings with an encoder-decoder, judged by exact match.

Training is teacher-forced token-level cross-entropy (Sutskever et al. 2014), PAD ignored. The
headline metric is the percentage of test sequences decoded exactly (greedy for ``beam_size=1``,
else beam search), since a transduction with one wrong character is wrong; the teacher-forced
token accuracy is reported beside it. Every batch is freshly generated (the problems have more
strings than any training run sees), validation and test sets are fixed by ``data_seed``. For
short strings over few symbols the sets may share strings with training batches.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.seq2seq_decode import beam_search, greedy_decode
from ..models.outputs import SequenceOutput
from .base import Batch, check_positive, check_split
from .sequence_task import batch_generator, SequenceTask, split_generator
from .seq2seq_tasks import BOS, EOS, PAD, check_problem, problem_vocab, sample_pairs, to_batch

DEFAULT_TRAIN_SIZE = 10_000


def exact_matches(decoded: Tensor, target_out: Tensor) -> Tensor:
    """(B,) bool: decoded (L, B) equals target_out (T, B) (target then EOS, then PAD) at every
    step, both PAD after their EOS. Rows beyond the shorter of the two must be PAD in the other."""
    steps = max(decoded.shape[0], target_out.shape[0])
    a = F.pad(decoded, (0, 0, 0, steps - decoded.shape[0]), value=PAD)  # (L, B) -> (steps, B)
    b = F.pad(target_out, (0, 0, 0, steps - target_out.shape[0]), value=PAD)  # (T, B) -> (steps, B)
    return (a == b).all(dim=0)


class Seq2SeqTask(SequenceTask):
    """problem: "copy", "reverse" or "addition" (see :mod:`.seq2seq_tasks`); lengths in
    [min_length, max_length] (addition: digits per operand); num_symbols: alphabet size (addition:
    the base). train_size: examples per epoch (0: 10,000). beam_size: 1 scores with greedy
    decoding, more with beam search."""
    name = "seq2seq"
    metric = "exact_match"
    higher_is_better = True
    head = "seq2seq"

    def __init__(self, problem: str, *, min_length: int = 1, max_length: int = 10, num_symbols: int = 10,
                 train_size: int = 0, valid_size: int = 1000, test_size: int = 1000,
                 data_seed: int = 1234, beam_size: int = 1) -> None:
        check_problem(problem, min_length, max_length, num_symbols)
        if isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 0:
            raise ValueError(f"train_size must be an integer >= 0, got {train_size!r}")
        if isinstance(data_seed, bool) or not isinstance(data_seed, int):
            raise TypeError(f"data_seed must be an integer, got {data_seed!r}")
        self.problem, self.min_length, self.max_length = problem, min_length, max_length
        self.num_symbols, self.data_seed = num_symbols, data_seed
        self.train_size = train_size or DEFAULT_TRAIN_SIZE
        self.sizes = {"valid": check_positive("valid_size", valid_size),
                      "test": check_positive("test_size", test_size)}
        self.beam_size = check_positive("beam_size", beam_size)
        self.vocab = problem_vocab(problem, num_symbols)
        self.input_size = self.output_size = len(self.vocab)
        self._eval: dict[str, list[tuple[str, str]]] = {}

    def _pairs(self, count: int, generator: torch.Generator) -> list[tuple[str, str]]:
        return sample_pairs(self.problem, count, min_length=self.min_length, max_length=self.max_length,
                            num_symbols=self.num_symbols, generator=generator)

    def num_train_batches(self, batch_size: int) -> int:
        return math.ceil(self.train_size / check_positive("batch_size", batch_size))

    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        if not 0 <= index < self.num_train_batches(batch_size):
            raise ValueError(f"index must be in [0, {self.num_train_batches(batch_size)}), got {index}")
        count = min(batch_size, self.train_size - index * batch_size)
        return to_batch(self._pairs(count, batch_generator(self.data_seed, epoch, index)), self.vocab)

    def eval_pairs(self, split: str) -> list[tuple[str, str]]:
        """The fixed (source, target) strings of ``split``, generated once."""
        if check_split(split) not in self._eval:
            self._eval[split] = self._pairs(self.sizes[split], split_generator(self.data_seed, split))
        return self._eval[split]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        pairs, size = self.eval_pairs(split), check_positive("batch_size", batch_size)
        for start in range(0, len(pairs), size):
            yield to_batch(pairs[start:start + size], self.vocab)

    def forward(self, model: nn.Module, batch: Batch) -> SequenceOutput:
        return model(batch["source"], batch["source_lengths"], batch["target_in"], batch["target_lengths"])

    def lengths(self, batch: Batch) -> Tensor:
        """Decoder steps per sequence: the raw / dropped states are the decoder's."""
        return batch["target_lengths"]

    def loss(self, output: SequenceOutput, batch: Batch) -> Tensor:
        """Mean cross-entropy over the real target tokens (EOS included, PAD not)."""
        logits = output.prediction
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["target_out"].reshape(-1),  # (T B, V)
                               ignore_index=PAD)

    def decode(self, model: nn.Module, batch: Batch) -> Tensor:
        """Decoded tokens (T, B) of the batch's sources, T the batch's target_out length (a longer
        output cannot match), greedy or beam search per ``beam_size``."""
        source, lengths, steps = batch["source"], batch["source_lengths"], batch["target_out"].shape[0]
        if self.beam_size == 1:
            return greedy_decode(model, source, lengths, steps, BOS, EOS, pad=PAD).tokens
        return beam_search(model, source, lengths, self.beam_size, steps, BOS, EOS, pad=PAD).tokens

    def score(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """loss (mean per target token), token_accuracy (teacher-forced, percent of target tokens)
        and exact_match (percent of sequences)."""
        loss_sum, tokens, correct, matches, sequences = 0.0, 0, 0, 0, 0
        with torch.no_grad():
            for batch in batches:
                logits, target = self.forward(model, batch).prediction, batch["target_out"]
                real = target != PAD  # (T, B)
                loss_sum += float(F.cross_entropy(logits[real], target[real], reduction="sum"))
                correct += int((logits.argmax(-1) == target)[real].sum())
                tokens += int(real.sum())
                matches += int(exact_matches(self.decode(model, batch), target).sum())
                sequences += target.shape[1]
        if sequences == 0:
            raise ValueError("batches must not be empty")
        return {"loss": loss_sum / tokens, "exact_match": 100.0 * matches / sequences,
                "token_accuracy": 100.0 * correct / tokens}

    def describe(self) -> str:
        decoding = "greedy" if self.beam_size == 1 else f"beam {self.beam_size}"
        if self.problem == "addition":
            shape = f"{self.min_length}-{self.max_length} digits, base {self.num_symbols}"
        else:
            shape = f"length {self.min_length}-{self.max_length}, {self.num_symbols} symbols"
        return f"seq2seq {self.problem}, {shape}, {decoding}"
