"""Embedding dropout: drop whole word types, not individual embedding coordinates.

Gal & Ghahramani (2016), sec. 4 ("word embedding dropout"): a dropped word is dropped at every
position it occurs in the sequence, which is dropout on the rows of the embedding matrix (a mask of
shape (V, 1)). Merity et al. (2017, sec. 4.3) use it in AWD-LSTM; kept rows are scaled by 1/(1-p).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .masks import check_probability, dropout_mask
from .monte_carlo import is_stochastic


def embedding_dropout(weight: Tensor, input: Tensor, p: float, training: bool,
                      padding_idx: int | None = None, max_norm: float | None = None,
                      norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                      sparse: bool = False) -> Tensor:
    """Look up ``input`` in ``weight`` with whole rows (word types) dropped with probability ``p``.

    Args:
        weight: (V, D) embedding matrix.
        input: integer indices of any shape (*).
        p: probability of dropping a word type, in [0, 1).
        training: draw a mask when True; otherwise this is exactly ``F.embedding``.
        padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse: as in ``F.embedding``.
            ``padding_idx=None`` means no padding row (never -1, which would make the last row
            the padding row and freeze it).

    Returns:
        (*, D) embeddings; rows of dropped types are 0, kept ones are scaled by 1/(1-p).
    """
    p = check_probability("p", p)
    out = F.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    if not training or p == 0.0:
        return out
    # Scaling the looked-up rows by mask[input] equals looking up in (mask * weight), without
    # materialising a masked copy of the whole (V, D) matrix, and keeps max_norm/sparse semantics.
    mask = dropout_mask((weight.shape[0], 1), p, weight)  # (V, 1): one draw per word type
    return out * mask[input]  # mask[input]: (*, 1), broadcast over D


class Embedding(nn.Embedding):
    """Drop-in ``torch.nn.Embedding`` with embedding dropout (see :func:`embedding_dropout`).

    Extra keyword arguments: ``embed_p`` (probability of dropping a word type, default 0) and
    ``mc_dropout``. All other arguments, the ``weight`` parameter and the state dict are exactly
    ``nn.Embedding``'s, so checkpoints load in both directions. Input (*) -> output (*, D).
    """

    def __init__(self, *args: Any, embed_p: float = 0.0, mc_dropout: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.embed_p = check_probability("embed_p", embed_p)
        self.mc_dropout = bool(mc_dropout)

    def forward(self, input: Tensor) -> Tensor:
        if self.embed_p == 0.0 or not is_stochastic(self):
            return super().forward(input)
        return embedding_dropout(self.weight, input, self.embed_p, True, self.padding_idx,
                                 self.max_norm, self.norm_type, self.scale_grad_by_freq,
                                 self.sparse)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, embed_p={self.embed_p}, mc_dropout={self.mc_dropout}"
