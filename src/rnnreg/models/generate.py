"""Sampling text from a language model, one token at a time with the recurrent state carried."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..regularizers.monte_carlo import eval_mode


def _check(prime: Tensor, length: int, temperature: float, top_k: int) -> None:
    if not isinstance(prime, Tensor) or prime.dtype not in (torch.int64, torch.int32):
        raise TypeError("prime must be an int64 or int32 tensor of token ids")
    if prime.dim() != 1 or prime.numel() == 0:
        raise ValueError(f"prime must be a non-empty 1-D tensor (P,), got shape {tuple(prime.shape)}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be an integer >= 0, got {length!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0 (tokens are drawn from "
                         f"softmax(logits / temperature); use top_k=1 for greedy), got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 keeps every token), got {top_k!r}")


def _sample(logits: Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> Tensor:
    """One token id (1,) from logits (V,): softmax(logits / temperature), restricted to the top_k."""
    scaled = logits.float() / temperature
    if 0 < top_k < scaled.shape[0]:
        values, index = scaled.topk(top_k)
        return index[torch.multinomial(torch.softmax(values, -1), 1, generator=generator)]
    return torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator)


def generate(model: nn.Module, prime: Tensor, length: int, *, temperature: float = 1.0,
             top_k: int = 0, generator: torch.Generator | None = None) -> Tensor:
    """Sample ``length`` tokens that continue ``prime`` (P,).

    model: an RNNLanguageModel or SurprisalZoneoutLM (anything called as ``model(tokens (T, B),
        state)`` that returns an LMOutput). It runs in eval mode under no_grad, its modes are put
        back afterwards; MC dropout flags are left as they are.
    temperature: tokens are drawn from softmax(logits / temperature); must be > 0.
    top_k: draw only among the k most likely tokens (0 = all; k >= V also means all).
    generator: a torch.Generator on the model's device, making the draw reproducible.

    Returns the sampled ids, (length,) int64, without the prime.
    """
    _check(prime, length, temperature, top_k)
    device = next(model.parameters()).device
    out = torch.empty(length, dtype=torch.int64, device=device)
    with eval_mode(model), torch.no_grad():
        result = model(prime.to(device).view(-1, 1))  # (P,) -> (P, 1): one sequence, time-major
        for step in range(length):
            token = _sample(result.logits[-1, 0], temperature, top_k, generator)  # (1,)
            out[step] = token[0]
            if step + 1 < length:
                result = model(token.view(1, 1), result.state)  # (1,) -> (1, 1)
    return out
