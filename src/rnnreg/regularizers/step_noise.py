"""Per-step noise of one recurrent layer and one forward call: zoneout and recurrent dropout.

Every stepwise recurrence in rnnreg (rnnreg.LSTM/GRU/RNN on the stepwise path, GRU-D, the
Clockwork RNN) draws its per-step noise here, once per call and before the first step, so a fast
kernel and its slow reference twin can be handed the very same tensors. Shapes are time-major:
T steps, B sequences, H hidden units.

- Zoneout (Krueger et al. 2016, eq. 5-6): h_t = d_t * h_{t-1} + (1 - d_t) * h~_t, with
  d_t ~ Bernoulli(rate) in training and d_t = rate at eval, the expectation (the paper's
  deterministic test-time rule). A per-step probability from outside replaces the rate when given
  (surprisal-driven zoneout, Rocki 2016: see :mod:`.surprisal_zoneout`): sampled in training, used
  as is at eval. On padded steps d_t = 1 exactly, so the state is frozen and the last row of the
  output holds each sequence's final state.
- Recurrent dropout (Gal & Ghahramani 2016, "A theoretically grounded application of dropout in
  recurrent neural networks"): one (B, H) mask on h_{t-1}, the same at every step of a sequence.
  With ``semeniuta=True`` (Semeniuta et al. 2016, eq. 8) a fresh (T, B, H) mask on the candidate
  update instead, which never erases the memory itself. Both are training only (identity at
  eval) and scaled by 1/(1-p), see :func:`.masks.dropout_mask`.

Random-number order, fixed because seeded twins and reproduced runs depend on it: keep_h, then
keep_c, then the recurrent-dropout mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .masks import bernoulli_keep, check_probability, dropout_mask, keep_mask


@dataclass(frozen=True)
class StepNoise:
    """The per-step noise of one layer direction and one call; None: that regularizer is off.

    rec (B, H): recurrent-dropout mask on h_{t-1}, entries 0 or 1/(1-p), one per sequence.
    update (T, B, H): Semeniuta mask on the candidate update, fresh each step, same entries.
    keep_h, keep_c (T, B, H): zoneout weights d_t in [0, 1] for h and for an LSTM's c;
    1 keeps the previous value.
    """
    rec: Tensor | None = None
    update: Tensor | None = None
    keep_h: Tensor | None = None
    keep_c: Tensor | None = None

    def map_steps(self, fn: Callable[[Tensor], Tensor]) -> StepNoise:
        """``fn`` applied to every (T, B, H) tensor (update, keep_h, keep_c), e.g. a time reversal
        for the backward direction; ``rec`` has no time axis and is left as it is."""
        def over(t: Tensor | None) -> Tensor | None:
            return None if t is None else fn(t)

        return StepNoise(self.rec, over(self.update), over(self.keep_h), over(self.keep_c))


def freeze_padded(keep: Tensor | None, valid: Tensor | None, shape: tuple[int, int, int],
                  like: Tensor) -> Tensor | None:
    """Zoneout weights with d_t = 1 wherever ``valid`` (T, B) is False: a padded step keeps the
    whole state. ``keep`` None (no zoneout) becomes 0 on valid steps; ``valid`` None: unchanged."""
    if valid is None:
        return keep
    keep = like.new_zeros(shape) if keep is None else keep
    return torch.where(valid[:, :, None], keep, torch.ones_like(keep))  # (T, B, H)


def zoneout_weights(rate: float, shape: tuple[int, int, int], like: Tensor, *, stochastic: bool,
                    signal: Tensor | None = None, valid: Tensor | None = None) -> Tensor | None:
    """Zoneout weights d_t (T, B, H) in like's dtype and device, or None when nothing zones out.

    stochastic: sample (training or MC dropout) rather than take the expectation. signal:
    per-step keep probabilities broadcastable to ``shape``; they replace ``rate`` (and carry no
    gradient). valid (T, B):
    False on padded steps, which get d_t = 1.
    """
    rate = check_probability("zoneout rate", rate)
    if signal is not None:
        # No gradient into the signal, on any path: training samples masks from it, the C++ and
        # step-loop kernels take zoneout weights as constants, so the reference twin must too.
        prob = signal.detach().to(like.dtype).expand(shape)  # (T, B, 1 or H) -> (T, B, H)
        keep = bernoulli_keep(prob) if stochastic else prob
    elif rate > 0.0:
        keep = keep_mask(shape, rate, like) if stochastic else like.new_full(shape, rate)
    else:
        keep = None
    return freeze_padded(keep, valid, shape, like)


def _recurrent_masks(p: float, shape: tuple[int, int, int], like: Tensor, stochastic: bool,
                     semeniuta: bool) -> tuple[Tensor | None, Tensor | None]:
    """(rec (B, H) or None, update (T, B, H) or None); both None at eval or when p is 0."""
    p = check_probability("recurrent_dropout", p)
    if not stochastic or p == 0.0:
        return None, None
    if semeniuta:
        return None, dropout_mask(shape, p, like)  # fresh every step
    return dropout_mask(shape[1:], p, like), None  # (B, H): one per sequence


def draw_step_noise(shape: tuple[int, int, int], like: Tensor, *, stochastic: bool,
                    recurrent_dropout: float = 0.0, semeniuta: bool = False, zoneout_h: float = 0.0,
                    zoneout_c: float | None = None, keep_signal: Tensor | None = None,
                    valid: Tensor | None = None) -> StepNoise:
    """Draw every per-step mask of one layer direction for one call.

    shape: (T, B, H). like: a tensor whose dtype and device the masks take. stochastic: training
    (or MC dropout); otherwise zoneout takes its expectation and recurrent dropout is off.
    zoneout_c: the cell-state rate of a cell that has one (LSTM), None for a cell that has not.
    keep_signal: outside per-step keep probabilities, broadcastable to (T, B, H), for h and c alike.
    valid (T, B): False on padded steps, whose keep weights are exactly 1.
    """
    keep_h = zoneout_weights(zoneout_h, shape, like, stochastic=stochastic, signal=keep_signal, valid=valid)
    keep_c = (None if zoneout_c is None else
              zoneout_weights(zoneout_c, shape, like, stochastic=stochastic, signal=keep_signal, valid=valid))
    rec, update = _recurrent_masks(recurrent_dropout, shape, like, stochastic, semeniuta)
    return StepNoise(rec, update, keep_h, keep_c)
