"""Monte Carlo dropout: keep sampling masks at test time and average the predictions.

Gal & Ghahramani (2016), "Dropout as a Bayesian approximation" and "A theoretically grounded
application of dropout in recurrent neural networks": a network trained with dropout is an
approximate variational posterior over its weights, so running T stochastic forward passes at test
time and taking the sample mean and variance gives a predictive mean and an uncertainty estimate.

Library-wide convention: every stochastic rnnreg module has a boolean attribute ``mc_dropout``
(default False) and samples when ``module.training or module.mc_dropout`` (:func:`is_stochastic`).
Plain ``torch.nn.Dropout`` has no such attribute and stays the identity in eval mode.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def is_stochastic(module: nn.Module) -> bool:
    """True when ``module`` should draw random masks/noise: in training, or with MC dropout on."""
    return module.training or bool(getattr(module, "mc_dropout", False))


def _mc_modules(module: nn.Module) -> list[nn.Module]:
    # A child that happens to be *named* ``mc_dropout`` is a Module, not the flag: skip it.
    return [m for m in module.modules() if isinstance(getattr(m, "mc_dropout", None), bool)]


def set_mc_dropout(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Set ``mc_dropout`` on ``module`` and on every submodule that has the flag.

    Returns ``module`` itself (so calls can be chained, like ``nn.Module.train``). Modules without a
    boolean ``mc_dropout`` attribute are left alone.
    """
    for m in _mc_modules(module):
        m.mc_dropout = bool(enabled)
    return module


@contextlib.contextmanager
def mc_dropout(module: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Context manager: switch MC dropout on (or off) for the block, then restore every old flag."""
    previous = [(m, m.mc_dropout) for m in _mc_modules(module)]
    set_mc_dropout(module, enabled)
    try:
        yield module
    finally:
        for m, flag in previous:
            m.mc_dropout = flag


def _default_fn(output: Any) -> Tensor:
    # Recurrent layers return (output, state); the prediction is the first element.
    return output if isinstance(output, Tensor) else output[0]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    # Restore each submodule's own flag: a model may be deliberately in a mixed train/eval state.
    previous = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in previous:
            m.training = flag


def mc_predict(model: nn.Module, *args: Any, n_samples: int = 20,
               fn: Callable[[Any], Tensor] | None = None, **kwargs: Any) -> tuple[Tensor, Tensor]:
    """Predictive mean and variance from ``n_samples`` stochastic passes (Gal & Ghahramani 2016).

    The model runs in eval mode (so e.g. batch norm uses its running statistics) with MC dropout
    on, under ``torch.no_grad``; its previous train/eval modes and ``mc_dropout`` flags are
    restored afterwards. ``fn`` maps one output of ``model(*args, **kwargs)`` to a tensor
    (default: the output if it is a tensor, else ``output[0]``).

    Returns ``(mean, var)``, each of the shape of ``fn(output)``; ``var`` is the population variance
    over the samples (``correction=0``), so it is exactly zero for a deterministic model.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    fn = _default_fn if fn is None else fn
    if not _mc_modules(model):
        logger.warning("mc_predict: %s has no module with an mc_dropout flag; the %d samples "
                       "will be identical", type(model).__name__, n_samples)
    with eval_mode(model), mc_dropout(model), torch.no_grad():
        samples = torch.stack([fn(model(*args, **kwargs)) for _ in range(n_samples)])  # (S, ...)
    return samples.mean(dim=0), samples.var(dim=0, correction=0)
