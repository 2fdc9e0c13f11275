"""Shared mechanics of WeightDrop and WeightNoise: run a module with some weights replaced.

Earlier weight-drop implementations deleted the wrapped ``nn.LSTM``'s parameters and patched
``flatten_parameters``; that relied on RNN internals, broke on PyTorch upgrades and, in one
well-known case (fastai issue 2591), left the raw weight without a gradient. Here the wrapped
module is never modified: each forward call computes the replacement tensors from the raw
parameters and runs ``torch.func.functional_call``, which swaps them in for that call only and
swaps the originals back afterwards. Gradients flow through the replacement to the raw parameter.
``nn.RNNBase`` notices the swapped weights itself (it re-reads its ``_flat_weights`` when the
registered weights change), so no RNN-specific code is needed.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.func import functional_call

from .monte_carlo import is_stochastic


def _resolve(module: nn.Module, name: str) -> Any:
    # Not ``get_parameter``: inside an outer functional_call (nested wrappers) the attribute is a
    # plain Tensor, which get_parameter refuses.
    owner, _, leaf = name.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, leaf)


def _check_names(module: nn.Module, weights: str | Sequence[str]) -> tuple[str, ...]:
    names = (weights,) if isinstance(weights, str) else tuple(weights)
    if not names:
        raise ValueError("weights must name at least one parameter of the wrapped module")
    available = [n for n, _ in module.named_parameters(remove_duplicate=False)]
    for name in names:
        if not isinstance(name, str) or name not in available:
            raise ValueError(f"{name!r} is not a parameter of {type(module).__name__}; "
                             f"available parameters: {', '.join(available) or '(none)'}")
    if len(set(names)) != len(names):
        raise ValueError(f"weights contains duplicate names: {list(names)}")
    return names


class _ReparametrizedWrapper(nn.Module, abc.ABC):
    """Base: call ``self.module`` with ``self.transform(name, raw)`` in place of each named weight.

    The raw parameters stay registered under their normal names in ``self.module``, so the state
    dict is the inner module's with a ``module.`` prefix. Parameters tied to a named one (the same
    ``nn.Parameter`` registered twice) receive the same replacement (functional_call ties them).

    Subclasses implement :meth:`transform` and :meth:`is_active` (False when the rate is 0).
    """

    def __init__(self, module: nn.Module, weights: str | Sequence[str],
                 mc_dropout: bool = False) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.weights = _check_names(module, weights)
        self.mc_dropout = bool(mc_dropout)

    @abc.abstractmethod
    def transform(self, name: str, weight: Tensor) -> Tensor:
        """The tensor used in place of ``weight`` (same shape) for one forward call."""

    @abc.abstractmethod
    def is_active(self) -> bool:
        """False when the regularizer is switched off by its rate (then forward is the identity)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not (is_stochastic(self) and self.is_active()):
            return self.module(*args, **kwargs)
        # One replacement per call, shared by all time steps (Merity et al. 2017, sec. 2).
        replaced = {name: self.transform(name, _resolve(self.module, name))
                    for name in self.weights}
        return functional_call(self.module, replaced, args, kwargs)
