"""The training progress bar: live loss, perplexity or bits per character (language models) or
the task's metric at each validation (sequence tasks), throughput and ETA."""

from __future__ import annotations

import sys

from tqdm import tqdm

from ..tasks.lm_metrics import METRICS, metric_value


class ProgressBar:
    """An Observer (rnnreg.training.progress) that draws one tqdm bar per epoch, counted in data rows
    (language models) or batches (tasks), so its ETA is the epoch's; validations and events are
    printed above the bar."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.metric = "ppl"
        self.position = 0
        self.unit, self.rate = "row", "tok/s"

    def _write(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stdout)

    def on_start(self, info: dict) -> None:
        self.metric = info["metric"]
        self.unit, self.rate = ("row", "tok/s") if info["unit"] == "tokens" else ("batch", "ex/s")
        resumed = f", resumed at step {info['resumed_at_step']}" if info["resumed_at_step"] else ""
        ranks = f" x {info['world_size']} processes" if info["world_size"] > 1 else ""
        self._write(f"run {info['run']}: {info['params']:,} parameters, {info['task']}, "
                    f"on {info['device']}{ranks}{resumed}")

    def on_epoch_start(self, epoch: int, stage: str, rows: int, position: int) -> None:
        self._close()
        label = f"epoch {epoch}" + (" (finetune)" if stage == "finetune" else "")
        self.bar = tqdm(total=rows, initial=position, desc=label, unit=self.unit, disable=not self.enabled,
                        dynamic_ncols=True, file=sys.stderr, leave=False)
        self.position = position

    def on_step(self, step: int, position: int, loss: float, tokens_per_s: float) -> None:
        if self.bar is None:
            return
        self.bar.update(position - self.position)
        self.position = position
        if step % 5 == 0 or step == 1:
            shown = f"  {self.metric} {metric_value(loss, self.metric):.3f}" if self.metric in METRICS else ""
            self.bar.set_postfix_str(f"step {step}  loss {loss:.4g}{shown}  {tokens_per_s:,.0f} {self.rate}")

    def on_eval(self, record: dict) -> None:
        avg = " (averaged weights)" if record.get("averaged") else ""
        value = (metric_value(record["loss"], self.metric) if self.metric in METRICS
                 else record.get(self.metric, float("nan")))
        self._write(f"step {record['step']:>7}  valid loss {record['loss']:.4g}  {self.metric} {value:.4f}{avg}")

    def on_epoch_end(self, epoch: int, train_loss: float, valid_loss: float) -> None:
        self._close()
        if self.metric not in METRICS:
            self._write(f"epoch {epoch} done: train loss {train_loss:.4g}, valid loss {valid_loss:.4g}")
            return
        self._write(f"epoch {epoch} done: train {self.metric} {metric_value(train_loss, self.metric):.4f}, "
                    f"valid {self.metric} {metric_value(valid_loss, self.metric):.4f}")

    def on_event(self, message: str) -> None:
        self._write(f"-- {message}")

    def on_end(self, summary: dict) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
