"""Whether a call runs under plain autograd, where a ``torch.autograd.Function`` without a tangent
or a vmap rule can run."""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD


def plain_autograd() -> bool:
    """No forward-mode dual level and no torch.func transform (grad, vmap, jacrev, jacfwd) active.

    The closed-form backward passes (kernels/squared_sums.py, weight drop's dropout_apply) have
    no ``jvp``: dynamo refuses ``fullgraph=True`` around an autograd.Function that defines one,
    so their callers take the plain autograd expressions where this is False."""
    return fwAD._current_level < 0 and not torch._C._are_functorch_transforms_active()
