"""What every CTC sequence-labelling task shares: batches, the CTC loss, decoding and the LER.

Connectionist temporal classification (Graves et al. 2006) trains a network with one output per
frame over the labels plus a blank (index 0 here) to emit a label sequence without knowing where
each label sits in time. A batch holds

- ``inputs`` (T, B, F) float frames, zero-padded after each sequence's ``input_lengths`` (B,);
- ``targets`` (B, S) int64 labels in 1..K, zero-padded after ``target_lengths`` (B,).

The loss is ``F.ctc_loss(..., reduction="mean", zero_infinity=True)``: torch's "mean" divides each
sequence's negative log-likelihood by its target length, then averages over the batch, so it is a
per-label NLL, comparable across label-sequence lengths and batch sizes (Graves et al. use the
summed NLL, which only rescales the gradient). ``zero_infinity`` zeroes the loss (and gradient)
of a sequence too short for its labels instead of letting an infinity poison the batch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..decoding import ctc_greedy_decode, ctc_prefix_beam_search, label_error_rate
from ..models.outputs import SequenceOutput
from .base import Batch, check_positive, check_split
from .sequence_task import SequenceTask

BLANK = 0
Example = tuple[Tensor, Tensor]  # features (T, F) float, labels (L,) int64 in 1..K


def pad_ctc_batch(examples: Sequence[Example]) -> Batch:
    """Examples [(features (T_i, F), labels (L_i,))] -> a padded, time-major CTC batch."""
    if not examples:
        raise ValueError("examples must hold at least one (features, labels) pair")
    lengths = torch.tensor([x.shape[0] for x, _ in examples])
    label_lengths = torch.tensor([y.shape[0] for _, y in examples])
    width = examples[0][0].shape[1]
    inputs = torch.zeros(int(lengths.max()), len(examples), width)  # (T, B, F)
    targets = torch.zeros(len(examples), max(1, int(label_lengths.max())), dtype=torch.long)  # (B, S)
    for b, (x, y) in enumerate(examples):
        inputs[: x.shape[0], b] = x
        targets[b, : y.shape[0]] = y
    return {"inputs": inputs, "input_lengths": lengths, "targets": targets, "target_lengths": label_lengths}


def ctc_log_probs(output: SequenceOutput) -> Tensor:
    """(T, B, K + 1) scores -> log-probabilities, in float32 at least (CTC sums many of them)."""
    prediction = output.prediction
    return F.log_softmax(prediction.float() if prediction.dtype in (torch.float16, torch.bfloat16)
                         else prediction, dim=-1)


class CTCLabellingTask(SequenceTask):
    """Base class: subclasses provide the training batches and the fixed evaluation examples.

    beam_size: 1 decodes by best path, more by prefix beam search (at evaluation only).
    """
    metric = "ler"
    higher_is_better = False
    head = "every"

    def __init__(self, beam_size: int = 1) -> None:
        self.beam_size = check_positive("beam_size", beam_size)

    @abstractmethod
    def eval_examples(self, split: str) -> Sequence[Example]:
        """The fixed examples of ``split`` ("valid" or "test")."""

    def score_labels(self, labels: list[int]) -> list[int]:
        """Labels as the metric sees them (TIMIT folds 61 phones to 39 here); default: as is."""
        return labels

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        examples = self.eval_examples(check_split(split))
        check_positive("batch_size", batch_size)
        # Sorting by length keeps the padding small; the score does not depend on the order.
        order = sorted(range(len(examples)), key=lambda i: examples[i][0].shape[0])
        for start in range(0, len(order), batch_size):
            yield pad_ctc_batch([examples[i] for i in order[start:start + batch_size]])

    def forward(self, model: nn.Module, batch: Batch) -> SequenceOutput:
        return model(batch["inputs"], lengths=batch["input_lengths"])

    def lengths(self, batch: Batch) -> Tensor:
        return batch["input_lengths"]

    def loss(self, output: SequenceOutput, batch: Batch) -> Tensor:
        return F.ctc_loss(ctc_log_probs(output), batch["targets"], batch["input_lengths"],
                          batch["target_lengths"], blank=BLANK, reduction="mean", zero_infinity=True)

    def decode(self, log_probs: Tensor, lengths: Tensor) -> list[list[int]]:
        """Label sequences from (T, B, C) log-probabilities: best path or prefix beam search."""
        log_probs, lengths = log_probs.detach().cpu(), lengths.cpu()
        if self.beam_size == 1:
            return ctc_greedy_decode(log_probs, lengths, BLANK)
        return ctc_prefix_beam_search(log_probs, lengths, self.beam_size, BLANK)

    def score(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """``loss``: the training criterion (per-label NLL) averaged over sequences; ``ler``:
        label error rate in percent over all reference labels (Graves et al. 2006, eq. 16)."""
        nll, count, hypotheses, references = 0.0, 0, [], []
        with torch.no_grad():
            for batch in batches:
                log_probs = ctc_log_probs(self.forward(model, batch))
                lengths, target_lengths = batch["input_lengths"], batch["target_lengths"]
                per_sequence = F.ctc_loss(log_probs, batch["targets"], lengths, target_lengths, blank=BLANK,
                                          reduction="none", zero_infinity=True)  # (B,)
                nll += float((per_sequence / target_lengths.clamp(min=1)).sum())
                count += int(lengths.shape[0])
                hypotheses += [self.score_labels(h) for h in self.decode(log_probs, lengths)]
                targets = batch["targets"].cpu().tolist()
                references += [self.score_labels(t[:n]) for t, n in zip(targets, target_lengths.tolist())]
        if count == 0:
            raise ValueError("score needs at least one batch")
        return {"loss": nll / count, "ler": label_error_rate(hypotheses, references)}
