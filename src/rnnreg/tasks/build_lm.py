"""Builders: where the config stops. Each turns one config section into flat keyword arguments."""

from __future__ import annotations

import dataclasses
from typing import Iterable

from torch import nn

from ..config import Config, DataConfig, ModelConfig, OptimConfig
from ..data import Corpus, load_dataset
from ..models import RNNLanguageModel, SurprisalZoneoutLM
from ..optim import build_optimizer, build_scheduler

# Config fields that are not constructor arguments of the model.
_MODEL_ONLY = ("surprisal_zoneout", "surprisal_temperature", "bidirectional", "clockwork_periods",
               "attention")


def build_corpus(data: DataConfig) -> Corpus:
    return load_dataset(data.dataset, path=data.path, cache_dir=data.cache_dir, download=data.download)


def build_model(model: ModelConfig, vocab_size: int, *, return_cells: bool = False) -> nn.Module:
    kwargs = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name not in _MODEL_ONLY}
    kwargs["hidden_sizes"] = tuple(model.hidden_sizes) or None
    if model.surprisal_zoneout:
        return SurprisalZoneoutLM(vocab_size, temperature=model.surprisal_temperature,
                                  return_cells=return_cells, **kwargs)
    return RNNLanguageModel(vocab_size, return_cells=return_cells, **kwargs)


def build_training_optimizer(optim: OptimConfig, params: Iterable[nn.Parameter]):
    return build_optimizer(optim.optimizer, params, lr=optim.lr, momentum=optim.momentum,
                           weight_decay=optim.weight_decay, betas=tuple(optim.betas),
                           nonmono=optim.nonmono, trigger_rule=optim.trigger_rule,
                           rmsprop_alpha=optim.rmsprop_alpha)


def build_lr_schedule(optim: OptimConfig, optimizer):
    return build_scheduler(optim.schedule, optimizer, factor=optim.decay_factor,
                           start_epoch=optim.decay_start_epoch, patience=optim.plateau_patience)


def metric_for(config: Config, corpus: Corpus) -> str:
    """bpc for character-level corpora, ppl for word-level, unless the preset says otherwise."""
    if config.expect.metric != "auto":
        return config.expect.metric
    return "bpc" if corpus.level == "char" or corpus.name in ("ptb-char",) else "ppl"


def needs_cells(config: Config) -> bool:
    return config.penalties.norm_stabilizer > 0 and config.penalties.norm_stabilizer_on == "cell"
