"""Surprisal-driven zoneout (Rocki 2016): update a unit when the last prediction surprised us.

A unit zones out (keeps its previous value) when the surprisal of the previous prediction,
s_{t-1} = -log p(x_t | x_{<t}), is small, and updates when it is large. The layers take the
resulting per-step keep probabilities through ``forward(..., zoneout_keep=...)``; training samples
Bernoulli masks from them and eval uses them as the expectation, exactly as for fixed-rate zoneout.

How surprisal becomes a probability is our parameterisation, stated here rather than hidden:
keep = exp(-s / temperature), per unit through an optional per-unit temperature, so zero surprisal
keeps everything and a surprisal of several nats updates nearly every unit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def surprisal(logits: Tensor, targets: Tensor) -> Tensor:
    """-log p(target) in nats, per position: logits (..., V), targets (...) -> (...)."""
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return flat.view(targets.shape)  # (N,) -> targets' shape


def surprisal_keep(s: Tensor, temperature: Tensor | float = 1.0) -> Tensor:
    """Keep probabilities for ``zoneout_keep`` from surprisal ``s`` (T, B) or (B,).

    Returns (..., 1) to broadcast over units, or (..., H) when ``temperature`` is a per-unit (H,)
    tensor. Surprisal carries no gradient into the mask (the mask is sampled).
    """
    temperature = torch.as_tensor(temperature, dtype=s.dtype, device=s.device)
    if bool((temperature <= 0).any()):
        raise ValueError("surprisal_keep temperature must be > 0")
    return torch.exp(-s.detach().clamp_min(0).unsqueeze(-1) / temperature)  # (..., 1) or (..., H)
