"""What the training loop tells the outside world while it runs.

The loop calls an Observer; the library's default only logs. The CLI passes one that draws a
progress bar (``rnnreg.cli.progress``), so library code never prints.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Observer(Protocol):
    def on_start(self, info: dict) -> None: ...
    def on_epoch_start(self, epoch: int, stage: str, rows: int, position: int) -> None: ...
    def on_step(self, step: int, position: int, loss: float, tokens_per_s: float) -> None: ...
    def on_eval(self, record: dict) -> None: ...
    def on_epoch_end(self, epoch: int, train_loss: float, valid_loss: float) -> None: ...
    def on_event(self, message: str) -> None: ...
    def on_end(self, summary: dict) -> None: ...


class NullObserver:
    """Logs validations and events at INFO; silent per step."""

    def on_start(self, info: dict) -> None:
        log.info("training %s", info)

    def on_epoch_start(self, epoch: int, stage: str, rows: int, position: int) -> None:
        pass

    def on_step(self, step: int, position: int, loss: float, tokens_per_s: float) -> None:
        pass

    def on_eval(self, record: dict) -> None:
        log.info("validation at step %d: loss %.4f", record["step"], record["loss"])

    def on_epoch_end(self, epoch: int, train_loss: float, valid_loss: float) -> None:
        pass

    def on_event(self, message: str) -> None:
        pass

    def on_end(self, summary: dict) -> None:
        log.info("finished: %s", summary)
