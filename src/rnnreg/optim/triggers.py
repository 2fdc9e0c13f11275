"""The non-monotone trigger of NT-ASGD (Merity, Keskar & Socher 2017, "Regularizing and
Optimizing LSTM Language Models", Algorithm 1): decides, from the validation losses seen so far,
when SGD should switch to averaged SGD. Pure Python; no torch needed.
"""

from __future__ import annotations

import math
from typing import Any

from ._validate import check_choice, check_int

TRIGGER_RULES = ("code", "paper")


class NonMonotoneTrigger:
    """Fires when the validation loss stops improving in a non-monotone sense.

    ``check(val_loss)`` evaluates the rule against ``history`` *before* ``val_loss`` is appended,
    then appends it. With ``t = len(history)`` at the time of the check and ``v = val_loss``:

    * ``rule="code"`` (the AWD-LSTM reference code, which its authors state is the intended rule
      in salesforce/awd-lstm-lm issues 13, 47 and 73)::

          t > n  and  v > min(history[:t - n])     # i.e. min(history[:-n])

      The last ``n`` losses are masked out and ``v`` is compared with the best loss seen
      *more than* ``n`` checks ago: it fires once ``n`` further checks have failed to beat that
      old best, so a few noisy epochs cannot trigger the irreversible switch.
    * ``rule="paper"`` (Algorithm 1 as printed, line 6: ``t > n and v > min_{l in {t-n..t}}
      logs[l]``; ``logs[t]`` does not exist yet, so the window is the last ``n`` entries)::

          t > n  and  v > min(history[t - n:])    # i.e. min(history[-n:])

      It compares ``v`` with the best of the *most recent* ``n`` losses, so it fires as soon as
      one epoch is worse than the best of the last ``n`` -- the maintainers call this a typo.

    Both rules share the warm-up gate ``t > n`` and differ only in which slice of the history the
    minimum is taken over: everything except the last ``n`` ("code") versus only the last ``n``
    ("paper"). A NaN loss never fires (every comparison with NaN is false).
    """

    def __init__(self, n: int = 5, rule: str = "code") -> None:
        self.n = check_int("n", n, 1)
        self.rule = check_choice("rule", rule, TRIGGER_RULES)
        self.history: list[float] = []

    def _fires(self, v: float) -> bool:
        t, n = len(self.history), self.n
        if t <= n:
            return False
        window = self.history[:t - n] if self.rule == "code" else self.history[t - n:]
        return v > min(window)

    def check(self, val_loss: float) -> bool:
        """Return whether the trigger fires for ``val_loss``, then append it to ``history``.

        ``val_loss`` is a Python/NumPy number or a one-element tensor (read with ``.item()``).
        """
        if hasattr(val_loss, "item"):
            val_loss = val_loss.item()
        if isinstance(val_loss, bool) or not isinstance(val_loss, (int, float)):
            raise TypeError(f"val_loss must be a number, got {type(val_loss).__name__} "
                            f"{val_loss!r}")
        v = float(val_loss)
        fired = False if math.isnan(v) else self._fires(v)
        self.history.append(v)
        return fired

    def state_dict(self) -> dict[str, Any]:
        """The settings and the loss history, as plain Python values."""
        return {"n": self.n, "rule": self.rule, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (settings included)."""
        self.n = check_int("n", state["n"], 1)
        self.rule = check_choice("rule", state["rule"], TRIGGER_RULES)
        self.history = [float(v) for v in state["history"]]
