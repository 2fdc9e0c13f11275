"""Temporarily writing other values (e.g. Polyak averages) into parameters, then restoring
the raw values exactly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


@contextmanager
def swapped_values(pairs: Iterable[tuple[Tensor, Tensor]]) -> Iterator[None]:
    """Copy each ``value`` into its ``param`` for the body of the ``with``, then copy the saved
    raw values back, also when the body raises. ``pairs`` yields ``(param, value)``.

    In-place ``copy_`` keeps every parameter's identity (optimizers and hooks hold references to
    it) and makes the restore bitwise exact, unlike rebinding ``.data`` as AWD-LSTM's main.py does.
    """
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for param, value in pairs:
                saved.append((param, param.detach().clone()))
                param.copy_(value)
        yield
    finally:
        with torch.no_grad():
            for param, raw in saved:
                param.copy_(raw)
