"""The training loop for sequence tasks (adding problem, pixel MNIST, GRU-D, Clockwork RNN,
seq2seq, CTC): one function, top to bottom, with the language-model loop's conventions.

One step: take batch ``index`` of the epoch (a pure function of the data seed, so resuming
replays exactly), run the model, add the penalties to the task's loss at the call site, clip,
step. One validation: score the averaged weights (NT-ASGD) on the fixed validation split, keep the
best by the task's headline metric, and let NT-ASGD's trigger, the lr schedule and early stopping
see the validation loss. A checkpoint after every validation holds everything to resume exactly.
Sequences are independent, so unlike the language models no recurrent state is carried.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import torch

from .. import penalties
from ..tasks.build_lm import build_lr_schedule, build_training_optimizer
from ..tasks.build import build_task, build_task_model
from ..runs.checkpoint import load_checkpoint, save_checkpoint
from ..config import Config, config_to_dict
from .distributed import Distributed
from ..runs.metrics import MetricsLog, TensorBoardSink, truncate_after
from ..optim import NTASGD, EarlyStopping, averaged_parameters
from .progress import NullObserver, Observer
from .rng import capture_rng, restore_rng
from ..runs.run_dir import RunDir
from .snapshots import Snapshot
from .task_finish import finish_task_run, objective
from ..tasks.base import Batch, Task, on_device, to_device
from .loop import TrainingError
from .state import TrainingState

log = logging.getLogger(__name__)


def train_task(config: Config, run: RunDir, *, resume: bool = False, task: Task | None = None,
               observer: Observer | None = None, stop_requested: Callable[[], bool] = lambda: False) -> dict:
    """Train the sequence task of ``config`` in ``run`` (fresh, or from its last checkpoint with
    ``resume``); returns the summary written to ``run/summary.json``. ``task`` saves building the
    data again when the caller has it; ``stop_requested`` is polled after every step."""
    observer = observer or NullObserver()
    dist = Distributed.from_env()
    if dist.enabled:
        raise TrainingError(f"task {config.task.kind!r} trains in one process; torchrun is for language models")
    device = dist.device(config.train.device)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    task = task if task is not None else build_task(config)
    model = build_task_model(config, task).to(device)
    optimizer = build_training_optimizer(config.optim, model.parameters())
    schedule = build_lr_schedule(config.optim, optimizer)
    stopper = EarlyStopping(config.train.patience) if config.train.patience else None
    batch_size, n_batches = config.data.batch_size, task.num_train_batches(config.data.batch_size)
    state = TrainingState()
    if resume:
        ckpt = load_checkpoint(run.last, map_location=device)
        if ckpt.get("format") != "rnnreg-task":
            raise TrainingError(f"{run.last} is not a sequence-task checkpoint")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        if stopper is not None:
            stopper.load_state_dict(ckpt["early_stopping"])
        restore_rng(ckpt["rng"])
        state = TrainingState.from_dict(ckpt["state"])
        truncate_after(run.metrics, state.step)
    metrics = MetricsLog(run.metrics)
    board = TensorBoardSink(run.tensorboard) if config.train.tensorboard else None

    def record(entry: dict) -> None:
        metrics.log(entry)
        if board is not None:
            board.write(entry)

    def event(message: str) -> None:
        record({"kind": "event", "step": state.step, "epoch": state.epoch, "message": message})
        observer.on_event(message)
        log.info(message)

    def checkpoint() -> None:
        save_checkpoint(run.last, {
            "format": "rnnreg-task", "config": config_to_dict(config), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "early_stopping": stopper.state_dict() if stopper else None,
            "state": state.as_dict(), "rng": capture_rng()})

    def validate() -> float:
        """Score the averaged weights; the best by the task's metric become best.pt."""
        with averaged_parameters(optimizer):
            model.eval()
            scores = task.score(model, on_device(task.eval_batches("valid", config.data.eval_batch_size), device))
            goal = objective(task, scores)
            if goal < state.best_valid:
                state.best_valid, state.best_step = goal, state.step
                save_checkpoint(run.best, {"format": "rnnreg-task-weights", "config": config_to_dict(config),
                                           "model": model.state_dict(), "step": state.step,
                                           "scores": {k: float(v) for k, v in scores.items()}})
        model.train()
        state.validations += 1
        entry = {"kind": "eval", "step": state.step, "epoch": state.epoch, "split": "valid", **scores,
                 "averaged": isinstance(optimizer, NTASGD) and optimizer.averaging, "time": state.elapsed}
        record(entry)
        observer.on_eval(entry)
        return scores["loss"]

    observer.on_start({"run": str(run.path), "params": sum(p.numel() for p in model.parameters()),
                       "task": task.describe(), "batches": n_batches, "device": str(device),
                       "world_size": 1, "metric": task.metric, "resumed_at_step": state.step})
    good = Snapshot.take(model, optimizer)       # what a NaN rolls back to
    status, clock, budget_spent = "finished", time.perf_counter(), False
    model.train()
    while not state.done:
        observer.on_epoch_start(state.epoch, state.stage, n_batches, state.position)
        interrupted = False
        for index in range(state.position, n_batches):
            batch: Batch = to_device(task.train_batch(state.epoch, index, batch_size), device)
            out = task.forward(model, batch)
            main = task.loss(out, batch)
            pen, lengths = config.penalties, task.lengths(batch)   # lengths: padded batches' real steps
            ar = penalties.ar(out.dropped[-1], pen.ar, lengths)     # AR on the dropped output
            tar = penalties.tar(out.raw[-1], pen.tar, lengths)      # TAR on the raw output
            norm = sum((penalties.norm_stabilizer(seq, pen.norm_stabilizer, None, pen.norm_stabilizer_cost,
                                                  pen.norm_stabilizer_target, lengths)
                        for seq in _stabilized(config, out)), main.new_zeros(()))
            weight = penalties.elastic_net(model.parameters(), pen.l1, pen.l2) if pen.l1 or pen.l2 else main.new_zeros(())
            loss = main + ar + tar + norm + weight
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.optim.clip if config.optim.clip else math.inf)
            if not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item())):
                if config.train.nan_policy == "stop" or state.nan_recoveries >= config.train.max_nan_recoveries:
                    event(f"non-finite loss at step {state.step + 1}: stopping (train.nan_policy="
                          f"{config.train.nan_policy}, {state.nan_recoveries} recoveries so far)")
                    status, state.done = "failed", True
                    break
                state.nan_recoveries += 1
                good.restore(model, optimizer)
                factor = config.train.nan_lr_factor ** state.nan_recoveries
                for g in optimizer.param_groups:
                    g["lr"] *= factor
                event(f"non-finite loss at step {state.step + 1}: restored the last good weights, "
                      f"lr x{factor:g}, skipped this batch")
                continue
            optimizer.step()
            state.step += 1
            state.position = index + 1
            main_value = main.item()
            state.epoch_loss += main_value
            state.epoch_tokens += 1                         # batches: the epoch's loss is a mean of means
            now = time.perf_counter()
            state.elapsed += now - clock
            examples_per_s = batch_size / max(now - clock, 1e-9)
            clock = now
            if state.step % config.train.log_every == 0 or state.step == 1:
                record({"kind": "step", "step": state.step, "epoch": state.epoch,
                        "lr": optimizer.param_groups[0]["lr"], "loss": main_value,
                        "penalties": {"ar": ar.item(), "tar": tar.item(), "norm_stabilizer": norm.item(),
                                      "weight": weight.item()},
                        "grad_norm": grad_norm.item(), "time": state.elapsed, "examples_per_s": examples_per_s})
            observer.on_step(state.step, state.position, main_value, examples_per_s)
            out_of_budget = ((config.train.max_steps and state.step >= config.train.max_steps)
                             or (config.train.max_minutes and state.elapsed >= 60 * config.train.max_minutes))
            if config.train.eval_every and state.step % config.train.eval_every == 0 and not out_of_budget:
                validate()
                good = Snapshot.take(model, optimizer)
                checkpoint()
                clock = time.perf_counter()                 # validation time is not training time
            elif config.train.checkpoint_every and state.step % config.train.checkpoint_every == 0:
                checkpoint()
            if stop_requested():
                event(f"stop requested: checkpoint saved at step {state.step}; resume with --resume")
                checkpoint()
                status, interrupted, state.done = "stopped", True, True
                break
            if out_of_budget:
                event(f"training budget reached at step {state.step} ({state.elapsed / 60:.1f} min)")
                state.done = budget_spent = True
                break
        if status != "finished" or interrupted:
            break
        # End of an epoch (or of the budget): validate, let the schedules react, checkpoint.
        val_loss = validate()
        good = Snapshot.take(model, optimizer)
        train_loss = state.epoch_loss / max(state.epoch_tokens, 1)
        record({"kind": "epoch", "epoch": state.epoch, "step": state.step, "train_loss": train_loss,
                "valid_loss": val_loss, "lr": optimizer.param_groups[0]["lr"], "time": state.elapsed})
        observer.on_epoch_end(state.epoch, train_loss, val_loss)
        if isinstance(optimizer, NTASGD) and optimizer.observe(val_loss):
            event(f"non-monotone trigger: switched to averaged SGD at epoch {state.epoch}")
        schedule.epoch_end(state.stage_epoch, val_loss)
        if stopper is not None and stopper.update(val_loss):
            event(f"early stopping: no improvement for {config.train.patience} validations")
            state.done = True
        if state.stage_epoch >= config.train.epochs or budget_spent:
            state.done = True
        state.next_epoch()
        checkpoint()
        clock = time.perf_counter()
    summary = finish_task_run(config, run, task, model, state, status, device, record)
    metrics.close()
    if board is not None:
        board.close()
    observer.on_end(summary)
    return summary


def _stabilized(config: Config, out) -> list[torch.Tensor]:
    """The (T, B, H) sequences the norm-stabilizer penalises (Krueger & Memisevic 2016): every
    layer's hidden (or LSTM cell) states, or the layers listed in the config. Sequences start
    from a zero state, so there is no incoming state to compare the first step with."""
    pen = config.penalties
    if pen.norm_stabilizer == 0.0:
        return []
    source = out.cells if pen.norm_stabilizer_on == "cell" else out.raw
    if source is None:
        raise TrainingError("penalties.norm_stabilizer_on = 'cell' needs a model that returns its cells")
    return [source[layer] for layer in (pen.norm_stabilizer_layers or range(len(source)))]

