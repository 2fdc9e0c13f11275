"""Tuning the continuous cache's theta and lambda on validation text, as the papers do (Grave et
al. 2016 tune the cache on the validation set; Merity et al. 2017 sec. 7: "All of these are tuned
on the validation set", giving (window, lambda, theta) = (2000, 0.1, 1.0) on PTB and (3785,
0.1279, 0.662) on WikiText-2). The window is not searched: it is the evaluation's cost, and the
user's to choose (awd-lstm-lm's README runs PTB with 500).

The grid costs one pass of the model: the hidden states and p_vocab of each token are computed
once, and every (theta, lambda) pair re-scores them (:func:`.cache_pointer.cache_pointer_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from .cache_pointer import Progress, cache_pointer_scores

# The grid: theta from flat to sharp attention over the cache for LSTM outputs in (-1, 1) (the
# papers' 0.662 and 1.0 inside it); lambda around the papers' cache weights (0.1, 0.1279).
THETAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
LAMBDAS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


@dataclass(frozen=True)
class CacheSearch:
    """The best pair of the grid and its mean NLL (nats per token) on the searched text, the
    model's own NLL there (``plain``, batch size 1), and every pair's (``scores``)."""
    theta: float
    lambda_: float
    loss: float
    plain: float
    scores: dict[tuple[float, float], float]


def search_cache(model: nn.Module, source: Tensor, *, window: int, bptt: int, thetas: Sequence[float] = THETAS,
                 lambdas: Sequence[float] = LAMBDAS, progress: Progress | None = None) -> CacheSearch:
    """The (theta, lambda) of the grid with the lowest mean NLL on ``source`` ((N,) or (N, 1),
    the validation split); ties go to the first in grid order (theta, then lambda)."""
    scored = cache_pointer_scores(model, source, window=window, thetas=thetas, lambdas=lambdas, bptt=bptt,
                                  progress=progress)
    (theta, lambda_), loss = min(scored.cache.items(), key=lambda item: item[1])  # min keeps the first of ties
    return CacheSearch(theta, lambda_, loss, scored.plain, scored.cache)
