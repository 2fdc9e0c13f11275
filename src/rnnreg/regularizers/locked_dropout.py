"""Locked (variational) dropout: one dropout mask per sequence, reused at every time step.

Gal & Ghahramani (2016), "A theoretically grounded application of dropout in recurrent neural
networks", sec. 3: sampling a fresh mask per step is not a valid variational approximation for a
recurrent model; the same units must be dropped at all steps of a sequence. Merity et al. (2017,
sec. 4.2) apply this to the inputs and outputs of every LSTM layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from .masks import check_probability, dropout_mask
from .monte_carlo import is_stochastic


def locked_dropout(x: Tensor, p: float, training: bool, batch_first: bool = False) -> Tensor:
    """Drop the same features at every time step of each sequence.

    Args:
        x: (T, B, *F) time-major, or (B, T, *F) with ``batch_first``; any trailing feature dims.
        p: drop probability in [0, 1).
        training: sample a mask when True; otherwise ``x`` is returned unchanged.
        batch_first: whether the time axis is dim 1 instead of dim 0.

    Returns:
        A tensor of ``x``'s shape: ``x * mask`` with a mask of shape (1, B, *F) (or (B, 1, *F)),
        entries 0 or 1/(1-p). ``x`` itself when ``p == 0`` or not training.
    """
    p = check_probability("p", p)
    if not training or p == 0.0:
        return x
    if x.dim() < 2:
        raise ValueError(f"locked_dropout needs a (time, batch, ...) tensor, got shape "
                         f"{tuple(x.shape)}")
    shape = list(x.shape)
    shape[1 if batch_first else 0] = 1  # the time axis: broadcast one mask over all steps
    return x * dropout_mask(tuple(shape), p, x)


class LockedDropout(nn.Module):
    """Module form of :func:`locked_dropout`; samples in training or when ``mc_dropout`` is set.

    Input/output: (T, B, *F), or (B, T, *F) with ``batch_first=True``.
    """

    def __init__(self, p: float = 0.5, batch_first: bool = False, mc_dropout: bool = False) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.batch_first = bool(batch_first)
        self.mc_dropout = bool(mc_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return locked_dropout(x, self.p, is_stochastic(self), self.batch_first)

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}, mc_dropout={self.mc_dropout}"
