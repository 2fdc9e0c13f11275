"""Stepwise recurrences: a fast C++ CPU kernel and its plain-autograd reference twin."""

from __future__ import annotations

import logging
from typing import Callable

import torch

from . import reference

log = logging.getLogger(__name__)
FAST_DTYPES = (torch.float32, torch.float64)


def pick_kernel(cell: str, like: torch.Tensor, reference_only: bool = False) -> Callable:
    """Return the stepwise function for ``cell`` ('lstm', 'gru', 'rnn').

    The C++ kernel serves float32/float64 CPU tensors; anything else (CUDA, half precision, or a
    machine where the extension cannot be built) runs the reference twin, which is correct on every
    device but launches one small kernel per operation per step.
    """
    if not reference_only and like.device.type == "cpu" and like.dtype in FAST_DTYPES:
        from . import fast

        if fast.fast_available():
            return getattr(fast, f"{cell}_fast")
    return getattr(reference, f"{cell}_reference")
