"""A trained model back from its run directory: weights, config and vocabulary, no pickles."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..tasks.build_lm import build_model, needs_cells
from .checkpoint import load_checkpoint
from ..config import Config, config_from_dict
from ..data import Corpus
from ..data.vocab import Vocabulary
from .run_dir import RunDir


class VocabularyMismatch(ValueError):
    """The data given to a trained model is not tokenized with its vocabulary."""


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Module
    config: Config
    vocab: Vocabulary
    level: str
    dataset: str

    def check_corpus(self, corpus: Corpus) -> None:
        """Refuse data whose vocabulary differs from the one the model was trained with."""
        if corpus.vocab.to_list() != self.vocab.to_list():
            raise VocabularyMismatch(
                f"the data's vocabulary ({len(corpus.vocab)} tokens, from {corpus.name}) does not match "
                f"the model's ({len(self.vocab)} tokens, trained on {self.dataset})")


def load_trained(run: RunDir, *, which: str = "best", device: str | torch.device = "cpu") -> TrainedModel:
    """The model of ``run`` with its best weights (``which="best"``) or its latest (``"last"``)."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    ckpt = load_checkpoint(run.best if which == "best" else run.last, map_location=device)
    config = config_from_dict(ckpt["config"])
    vocab = Vocabulary.from_list(ckpt["vocab"])
    model = build_model(config.model, len(vocab), return_cells=needs_cells(config)).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return TrainedModel(model, config, vocab, ckpt.get("level", "word"), ckpt.get("dataset", config.data.dataset))
