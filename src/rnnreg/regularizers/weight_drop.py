"""DropConnect on named weights of any module ("weight drop").

Wan et al. (2013), "Regularization of neural networks using DropConnect": drop individual weights
instead of activations. Merity et al. (2017, sec. 2) apply it to the hidden-to-hidden matrices of
an LSTM: the mask is drawn once per forward call, so the same weights are dropped at every time
step and the fused cuDNN/CPU kernels can still be used unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .masks import apply_dropout, check_probability
from .reparametrize import _ReparametrizedWrapper


def drop_weight(weight: Tensor, p: float, training: bool) -> Tensor:
    """``weight * mask`` with an elementwise mask of ``weight``'s shape, entries 0 or 1/(1-p).

    Returns ``weight`` itself when ``p == 0`` or not training.
    """
    p = check_probability("p", p)
    if not training or p == 0.0:
        return weight
    return apply_dropout(weight, p)


class WeightDrop(_ReparametrizedWrapper):
    """Wrap ``module`` so the parameters named in ``weights`` are DropConnect-ed on each call.

    Example: ``WeightDrop(nn.LSTM(400, 1150), ["weight_hh_l0"], p=0.5)``; the wrapper is called
    exactly like the wrapped module. Names may be dotted (``"rnn.weight_hh_l0"``) to reach into
    submodules. Samples in training or when ``mc_dropout`` is set; otherwise the identity.
    """

    def __init__(self, module: nn.Module, weights: str | Sequence[str], p: float,
                 mc_dropout: bool = False) -> None:
        super().__init__(module, weights, mc_dropout)
        self.p = check_probability("p", p)

    def transform(self, name: str, weight: Tensor) -> Tensor:
        return drop_weight(weight, self.p, True)

    def is_active(self) -> bool:
        return self.p > 0.0

    def extra_repr(self) -> str:
        return f"weights={list(self.weights)}, p={self.p}, mc_dropout={self.mc_dropout}"
