"""The optimizer and learning-rate schedule of a run, from ``[optim]`` (flat arguments below)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..config import OptimConfig
from ..optim import NTASGD, build_optimizer, build_scheduler


def build_training_optimizer(optim: OptimConfig, params: Iterable[nn.Parameter]):
    return build_optimizer(optim.optimizer, params, lr=optim.lr, momentum=optim.momentum,
                           weight_decay=optim.weight_decay, betas=tuple(optim.betas),
                           nonmono=optim.nonmono, trigger_rule=optim.trigger_rule,
                           rmsprop_alpha=optim.rmsprop_alpha)


def build_lr_schedule(optim: OptimConfig, optimizer):
    return build_scheduler(optim.schedule, optimizer, factor=optim.decay_factor,
                           start_epoch=optim.decay_start_epoch, patience=optim.plateau_patience,
                           milestones=optim.milestones)


def finetune_optimizer(optim: OptimConfig, params: Iterable[nn.Parameter]):
    """AWD-LSTM's finetune.py: averaged SGD from the first step at the base lr (or
    ``finetune_lr``, as AWD-LSTM-MoS's finetune commands set), no schedule."""
    optimizer = NTASGD(params, lr=optim.finetune_lr or optim.lr, weight_decay=optim.weight_decay, n=optim.nonmono,
                       rule=optim.trigger_rule)
    optimizer.start_averaging()
    return optimizer, build_scheduler("none", optimizer, factor=1.0, start_epoch=0, patience=0)
