"""Evaluating with averaged weights, whatever the optimizer."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch.optim import Optimizer

from .nt_asgd import NTASGD
from .swap import swapped_values


def averaged_parameters(optimizer: Optimizer) -> AbstractContextManager[None]:
    """Context manager putting the optimizer's parameter averages into the parameters for the
    body of the ``with`` and restoring the raw values bitwise afterwards (also on exception).

    * :class:`NTASGD`: its averages once it has switched, else nothing.
    * ``torch.optim.ASGD``: its ``ax`` state for every parameter that has taken a step;
      parameters without state yet keep their values (the check AWD-LSTM's main.py lacked,
      salesforce/awd-lstm-lm issues 70 and 89). Note that torch's ``ax`` (with ``lambd=0``)
      is the mean of the iterates after steps ``t0 + 2 .. k``: its averaging weight is updated
      after it is used, so the first iterate after ``t0`` is left out.
    * any other optimizer (SGD, Adam, ...): a no-op.
    """
    if isinstance(optimizer, NTASGD):
        return optimizer.averaged()
    if isinstance(optimizer, torch.optim.ASGD):
        pairs = [(p, optimizer.state[p]["ax"]) for group in optimizer.param_groups
                 for p in group["params"] if "ax" in optimizer.state.get(p, {})]
        return swapped_values(pairs)
    return swapped_values(())
