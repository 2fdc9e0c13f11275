"""Language-model evaluation: mean cross-entropy per predicted token, with or without MC dropout.

The loss is summed over every predicted token and divided by their count (the last window of a
split is usually short; AWD-LSTM weights windows by ``len(data)`` instead, which overstates
the short one). Perplexity is exp of it, bits per character is it over ln 2 (:mod:`.lm_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batching import get_batch
from ..regularizers.monte_carlo import mc_dropout


@torch.no_grad()
def evaluate(model: nn.Module, source: Tensor, bptt: int, *,
             all_sum: Callable[..., list[float]] | None = None) -> float:
    """Mean cross-entropy (nats per token) of ``model`` on ``source`` (N, B), windows of ``bptt``,
    state carried across windows. The model is put in eval mode and left there. ``all_sum``: adds
    the totals up over the ranks of a torchrun job, each holding a share of the columns."""
    model.eval()
    total, count = 0.0, 0
    state = None
    for i in range(0, source.shape[0] - 1, bptt):
        x, y = get_batch(source, i, bptt)  # (T, B), (T, B)
        out = model(x, state, targets=y)
        total += out.nll.double().sum().item()  # (T, B) -log p(target)
        count += y.numel()
        state = out.state
    if all_sum is not None:
        total, count = all_sum(total, count)
    return total / max(count, 1)


@torch.no_grad()
def evaluate_mc(model: nn.Module, source: Tensor, bptt: int, samples: int) -> float:
    """MC-dropout cross-entropy (Gal & Ghahramani 2016): the predictive distribution is the mean of
    ``samples`` stochastic forward passes, each carrying its own recurrent state across windows."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    model.eval()
    with mc_dropout(model, True):
        total, count = 0.0, 0
        states: list = [None] * samples
        for i in range(0, source.shape[0] - 1, bptt):
            x, y = get_batch(source, i, bptt)  # (T, B), (T, B)
            log_probs = []
            for s in range(samples):
                out = model(x, states[s])
                states[s] = out.state
                log_probs.append(F.log_softmax(out.logits.float(), dim=-1))  # (T, B, V)
            # log of the mean probability, computed stably: logsumexp over samples - log S.
            mixed = torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(samples)  # (T, B, V)
            total += F.nll_loss(mixed.reshape(-1, mixed.shape[-1]), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    return total / max(count, 1)
