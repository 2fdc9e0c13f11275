"""Additive Gaussian weight noise on named weights of any module.

Graves (2011), "Practical variational inference for neural networks", and Graves et al. (2013),
"Speech recognition with deep recurrent neural networks": perturb the weights with N(0, std^2)
noise, sampled once per forward call (per sequence batch), not per time step, and train through
the perturbed weights. In eval mode the clean weights are used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .masks import check_nonnegative, normal_noise
from .reparametrize import _ReparametrizedWrapper


def add_weight_noise(weight: Tensor, std: float, training: bool) -> Tensor:
    """``weight + std * eps`` with ``eps ~ N(0, 1)`` of ``weight``'s shape.

    Returns ``weight`` itself when ``std == 0`` or not training.
    """
    std = check_nonnegative("std", std)
    if not training or std == 0.0:
        return weight
    return weight + normal_noise(weight.shape, std, weight)


class WeightNoise(_ReparametrizedWrapper):
    """Wrap ``module`` so the parameters named in ``weights`` get Gaussian noise on each call.

    Same mechanics as :class:`~rnnreg.regularizers.weight_drop.WeightDrop` (the wrapped module is
    never modified; state dict keys are the inner ones with a ``module.`` prefix).
    """

    def __init__(self, module: nn.Module, weights: str | Sequence[str], std: float,
                 mc_dropout: bool = False) -> None:
        super().__init__(module, weights, mc_dropout)
        self.std = check_nonnegative("std", std)

    def transform(self, name: str, weight: Tensor) -> Tensor:
        return add_weight_noise(weight, self.std, True)

    def is_active(self) -> bool:
        return self.std > 0.0

    def extra_repr(self) -> str:
        return f"weights={list(self.weights)}, std={self.std}, mc_dropout={self.mc_dropout}"
