"""The training progress bar: live loss, perplexity or bits per character (language models) or
the task's metric at each validation (sequence tasks), throughput and ETA."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from ..tasks.lm_metrics import METRICS, metric_value


class ProgressBar:
    """An Observer (rnnreg.training.progress) that draws one tqdm bar per epoch, counted in tokens
    (language models) or sequences (tasks), so its ETA is the epoch's; validations and events are
    printed above the bar."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.metric = "ppl"
        self.position = 0
        self.unit, self.rate = "tok", "tok/s"
        self.per_position = 1                # units in one position (a row of batched text, a batch)
        self.end = 0                         # the position at which the epoch is complete

    def _write(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stdout)

    def on_start(self, info: dict) -> None:
        self.metric = info["metric"]
        self.unit, self.rate = ("tok", "tok/s") if info["unit"] == "tokens" else ("seq", "seq/s")
        # Positions are rows of batched text or batches; the bar shows what they hold over all
        # ranks (data.batch_size tokens or sequences each), so its rate reads like the log's.
        self.per_position = info.get("batch_size") or 1
        resumed = f", resumed at step {info['resumed_at_step']}" if info["resumed_at_step"] else ""
        ranks = f" x {info['world_size']} processes" if info["world_size"] > 1 else ""
        self._write(f"run {info['run']}: {info['params']:,} parameters, {info['task']}, "
                    f"on {info['device']}{ranks}{resumed}")
        self.epoch_size, self.speed_from, self.estimated = info["epoch_size"], None, False

    # The time per epoch is estimated once a run, from the steps after the first (which pays for
    # allocation and warm-up), after ESTIMATE_STEPS of them or ESTIMATE_SECONDS, whichever
    # comes first (a large model takes seconds a step).
    ESTIMATE_STEPS, ESTIMATE_SECONDS = 10, 20.0
    clock = staticmethod(time.perf_counter)
    epoch_size, speed_from, estimated = 0, None, False   # (step, time, position) the speed is measured from

    def _estimate(self, step: int, position: int) -> None:
        if self.estimated or not self.epoch_size:
            return
        now = self.clock()
        if self.speed_from is None or position < self.speed_from[2]:     # first step, or a new epoch
            self.speed_from = (step, now, position)
            return
        first, start, at = self.speed_from
        steps, seconds = step - first, now - start
        if (steps >= self.ESTIMATE_STEPS or (steps >= 2 and seconds >= self.ESTIMATE_SECONDS)) and position > at:
            self._write(f"about {_duration(seconds * self.epoch_size / (position - at))} per epoch at this speed")
            self.estimated = True

    def on_epoch_start(self, epoch: int, stage: str, rows: int, position: int) -> None:
        self._close()
        label = f"epoch {epoch}" + (" (finetune)" if stage == "finetune" else "")
        # A language model's last row of batched text is only ever a target, so its epoch ends
        # one row short of ``rows``; a task's ends at its last batch.
        self.end = rows - 1 if self.unit == "tok" else rows
        total = self.end * self.per_position
        self.bar = tqdm(total=total, initial=position * self.per_position, desc=label, unit=self.unit,
                        unit_scale=total >= 10_000, disable=not self.enabled, dynamic_ncols=True,
                        file=sys.stderr, leave=False)      # unit_scale: 1.2M tok, but 640 seq (not 640.0)
        self.position = position

    def on_step(self, step: int, position: int, loss: float, tokens_per_s: float) -> None:
        if self.bar is None:
            return
        self.bar.update((position - self.position) * self.per_position)
        self.position = position
        self._estimate(step, position)
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
        # The loop ends an epoch early only when a budget (train.max_steps / max_minutes) ran out.
        done = (f"epoch {epoch} done" if self.position >= self.end else
                f"stopped by the budget at {100 * self.position // max(self.end, 1)}% of epoch {epoch}")
        if self.metric not in METRICS:
            self._write(f"{done}: train loss {train_loss:.4g}, valid loss {valid_loss:.4g}")
            return
        self._write(f"{done}: train {self.metric} {metric_value(train_loss, self.metric):.4f}, "
                    f"valid {self.metric} {metric_value(valid_loss, self.metric):.4f}")

    def on_event(self, message: str) -> None:
        self._write(f"-- {message}")

    def on_end(self, summary: dict) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(seconds: float) -> str:
    """``45 s``, ``3.4 min``, ``2.1 h``: an estimate's precision, in the unit a person reads."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
