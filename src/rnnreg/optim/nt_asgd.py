"""NT-ASGD: SGD that switches, once, to iterate averaging (Merity, Keskar & Socher 2017,
"Regularizing and Optimizing LSTM Language Models", Algorithm 1; averaging of Polyak & Juditsky
1992). One optimizer for both phases, so no parameter is lost at the switch (AWD-LSTM's main.py
builds a fresh ``torch.optim.ASGD`` from ``model.parameters()`` there instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._validate import check_float
from .swap import swapped_values
from .triggers import NonMonotoneTrigger

logger = logging.getLogger(__name__)


class NTASGD(Optimizer):
    """Non-monotonically triggered averaged SGD.

    Before the switch each step is plain SGD, identical to ``torch.optim.SGD(lr, momentum,
    weight_decay)`` (dampening 0, no Nesterov): ``g = grad + weight_decay * w`` (L2 added to the
    gradient), ``buf = momentum * buf + g`` (``buf = g`` on the first step), ``w -= lr * buf``.
    Parameters whose ``grad`` is None are not updated.

    After the switch (:meth:`start_averaging`, or :meth:`observe` when the
    :class:`NonMonotoneTrigger` fires) the SGD steps go on unchanged and every parameter's state
    ``ax`` holds the running mean of its values after each step since the switch,
    ``ax = (1/k) sum_{i=1..k} w_i`` (Algorithm 1's output). Until the first such step ``ax`` is
    the value at the switch, so :meth:`averaged` works right away (AWD-LSTM's ``KeyError: 'ax'``,
    salesforce/awd-lstm-lm issues 70 and 89). ``ax`` and the trigger's history are part of
    :meth:`state_dict`.

    Args:
        params: parameters or parameter groups, as for any torch optimizer.
        lr: learning rate (> 0).
        momentum: heavy-ball momentum in [0, 1).
        weight_decay: L2 coefficient (>= 0) added to the gradient.
        n: the trigger's non-monotone interval (AWD-LSTM's ``nonmono``).
        rule: the trigger rule, "code" or "paper" (see :class:`NonMonotoneTrigger`).
    """

    def __init__(self, params: Iterable[Any], lr: float, *, momentum: float = 0.0,
                 weight_decay: float = 0.0, n: int = 5, rule: str = "code") -> None:
        defaults = {"lr": check_float("lr", lr, 0.0, low_open=True),
                    "momentum": check_float("momentum", momentum, 0.0, 1.0, high_open=True),
                    "weight_decay": check_float("weight_decay", weight_decay, 0.0)}
        super().__init__(params, defaults)
        self.trigger = NonMonotoneTrigger(n, rule)
        self._averaging = False

    @property
    def averaging(self) -> bool:
        """Whether the switch to averaging has happened."""
        return self._averaging

    def _params(self) -> Iterator[Tensor]:
        for group in self.param_groups:
            yield from group["params"]

    def _init_average(self, p: Tensor) -> None:
        state = self.state[p]
        state["ax"] = p.detach().clone(memory_format=torch.preserve_format)
        state["ax_count"] = 0

    def start_averaging(self) -> None:
        """Switch to averaging now (idempotent)."""
        if self._averaging:
            return
        self._averaging = True
        for p in self._params():
            self._init_average(p)
        logger.info("NT-ASGD: averaging starts after %d validation checks",
                    len(self.trigger.history))

    def observe(self, val_loss: float) -> bool:
        """Feed a validation loss to the trigger; switch if it fires. Returns whether the switch
        happened in this call. After the switch the trigger is no longer consulted (Algorithm 1
        only logs while T = 0)."""
        if self._averaging:
            return False
        if self.trigger.check(val_loss):
            self.start_averaging()
            return True
        return False

    def _sgd_update(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        # Same operations, in the same order, as torch.optim.SGD's single-tensor path, so the SGD
        # phase reproduces it bitwise.
        if grad.is_sparse:
            raise RuntimeError("NTASGD does not support sparse gradients")
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        if group["momentum"] != 0:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(group["momentum"]).add_(grad)
            grad = buf
        p.add_(grad, alpha=-group["lr"])

    def _update_average(self, p: Tensor) -> None:
        state = self.state[p]
        if "ax" not in state:  # a group added with add_param_group after the switch
            self._init_average(p)
        state["ax_count"] += 1
        k, ax = state["ax_count"], state["ax"]
        if k == 1:
            ax.copy_(p)
        else:
            # Incremental mean ax_k = ax_{k-1} + (w_k - ax_{k-1}) / k; torch.optim.ASGD's form.
            ax.add_(p.sub(ax).mul_(1.0 / k))

    @torch.no_grad()
    def step(  # type: ignore[override]  # torch types step with overloads; one signature here
            self, closure: Callable[[], float] | None = None) -> float | None:
        """One SGD step on every parameter with a gradient, then (when averaging) one update of
        the running mean of every parameter, moved or not: the average is over whole iterates."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._sgd_update(p, p.grad, group)
        if self._averaging:
            for p in self._params():
                self._update_average(p)
        return loss

    def _average_pairs(self) -> list[tuple[Tensor, Tensor]]:
        if not self._averaging:
            return []
        return [(p, self.state[p]["ax"]) for p in self._params() if "ax" in self.state[p]]

    def averaged(self) -> AbstractContextManager[None]:
        """Context manager: the averages are in the parameters inside the ``with``; the raw
        iterates come back bitwise afterwards, also on exception. A no-op before the switch."""
        return swapped_values(self._average_pairs())

    @torch.no_grad()
    def copy_averages_to_params(self) -> None:
        """Overwrite the parameters with their averages for good (end of training, before saving
        the model). A no-op before the switch."""
        for p, ax in self._average_pairs():
            p.copy_(ax)

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state (momentum buffers, ``ax``, ``ax_count``) plus an ``nt_asgd``
        entry holding the switch flag and the trigger state."""
        sd = super().state_dict()
        sd["nt_asgd"] = {"averaging": self._averaging, "trigger": self.trigger.state_dict()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("nt_asgd", None)
        if extra is None:
            raise ValueError("state_dict has no 'nt_asgd' entry: it was not saved by NTASGD")
        super().load_state_dict(state_dict)
        self._averaging = bool(extra["averaging"])
        self.trigger.load_state_dict(extra["trigger"])
