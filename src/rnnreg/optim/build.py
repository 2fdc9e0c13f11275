"""Building an optimizer by name, with flat arguments (what the training loop and CLI use)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from ._validate import check_choice, check_float, check_int
from .nt_asgd import NTASGD

OPTIMIZERS = ("sgd", "adam", "rmsprop", "asgd", "nt_asgd")


def build_optimizer(name: str, params: Iterable[Any], *, lr: float, momentum: float = 0.0,
                    weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-8, nonmono: int = 5, trigger_rule: str = "code",
                    asgd_t0: int = 0, rmsprop_alpha: float = 0.99) -> Optimizer:
    """The optimizer ``name`` over ``params``.

    * "sgd": ``torch.optim.SGD(lr, momentum, weight_decay)``.
    * "adam": ``torch.optim.Adam(lr, betas, eps, weight_decay)`` (L2 added to the gradient).
    * "rmsprop": ``torch.optim.RMSprop(lr, alpha=rmsprop_alpha, eps, momentum, weight_decay)``;
      ``rmsprop_alpha`` is the decay of the squared-gradient average (the zoneout code uses 0.5).
    * "asgd": ``torch.optim.ASGD(lr, lambd=0, alpha=0.75, t0=asgd_t0, weight_decay)``; with
      ``lambd=0`` the step size stays ``lr`` and ``ax`` is the plain mean of the iterates after
      step ``asgd_t0`` (AWD-LSTM's averaging phase, which used ``t0=0``).
    * "nt_asgd": :class:`NTASGD` (``lr, momentum, weight_decay``; trigger ``n=nonmono``,
      ``rule=trigger_rule``).

    ``momentum`` is only accepted by "sgd", "rmsprop" and "nt_asgd"; a nonzero value elsewhere raises
    ValueError rather than being silently dropped.
    """
    check_choice("name", name, OPTIMIZERS)
    lr = check_float("lr", lr, 0.0, low_open=True)
    momentum = check_float("momentum", momentum, 0.0, 1.0, high_open=True)
    weight_decay = check_float("weight_decay", weight_decay, 0.0)
    asgd_t0 = check_int("asgd_t0", asgd_t0, 0)
    rmsprop_alpha = check_float("rmsprop_alpha", rmsprop_alpha, 0.0, 1.0, low_open=True, high_open=True)
    if momentum != 0.0 and name in ("adam", "asgd"):
        raise ValueError(f"momentum must be 0 for optimizer {name!r}, got {momentum}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=rmsprop_alpha, eps=eps, momentum=momentum,
                                   weight_decay=weight_decay)
    if name == "asgd":
        return torch.optim.ASGD(params, lr=lr, lambd=0.0, alpha=0.75, t0=asgd_t0,
                                weight_decay=weight_decay)
    return NTASGD(params, lr, momentum=momentum, weight_decay=weight_decay, n=nonmono,
                  rule=trigger_rule)
