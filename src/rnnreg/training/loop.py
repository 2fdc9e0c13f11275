"""The training loop: one function, top to bottom, for every task (language models included).

One step: take the task's next batch (a BPTT window, or batch ``index`` of a fixed set), scale
the learning rate as the task asks (Merity et al. 2017, sec. 4.1: window length / bptt), run the
model from the carried state (language models) or from zeros, add the penalties to the task's
loss at the call site, clip, step. One validation: score the averaged weights (NT-ASGD), keep
the best by the task's metric, and let NT-ASGD's trigger, the lr schedule and early stopping see
the validation loss. A checkpoint after every validation holds everything needed to resume
exactly: weights, optimizer (with averages), schedule, the task's own state (the BPTT
generator), every rank's RNG and carried state, and where in the epoch the run stood.

Time: ``state.elapsed`` counts training steps only (validations and checkpoints excluded), so
``train.max_minutes`` and the summary's ``wall_s`` mean the same for every task.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import torch

from ..config import Config, config_to_dict
from ..optim import NTASGD, EarlyStopping, averaged_parameters
from ..runs import RunDir
from ..runs.run_dir import trained_config_mismatch
from ..runs.checkpoint import load_checkpoint, save_checkpoint
from ..runs.portable import save_portable
from ..runs.metrics import MetricsLog, TensorBoardSink, read_metrics, truncate_after
from ..tasks.base import ModelSpec, Task
from ..tasks.build import build_model, build_task
from .distributed import Distributed
from .finish import finish_run
from .optimizers import build_lr_schedule, build_training_optimizer, finetune_optimizer
from .penalty_terms import PenaltyError, penalty_terms
from .precision import Precision
from .progress import NullObserver, Observer
from .rng import capture_rng, restore_rng
from .snapshots import Snapshot
from .state import TrainingState

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN the policy does not recover from, a broken resume)."""


def train(config: Config, run: RunDir, *, resume: bool = False, task: Task | None = None,
          observer: Observer | None = None, stop_requested: Callable[[], bool] = lambda: False) -> dict:
    """Train ``config`` in ``run`` (fresh, or from its last checkpoint with ``resume``); returns
    the summary written to ``run/summary.json``. ``task`` saves building the data again when the
    caller has it. ``stop_requested`` is polled after every step (the CLI sets it on SIGINT /
    SIGTERM): the run then checkpoints and returns, status "stopped"."""
    observer = observer or NullObserver()
    finished = run.finished_summary() if resume else None
    if finished is not None:
        # Resuming is idempotent: a finished run has nothing left to do, and is left as it is.
        log.info("%s is already finished; nothing to resume", run.path)
        return finished
    dist = Distributed.from_env()
    device = dist.device(config.train.device)
    dist.start(device)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed + dist.rank)  # different dropout masks per rank
    task = task if task is not None else build_task(config)
    try:
        task.start(batch_size=config.data.batch_size, eval_batch_size=config.data.eval_batch_size,
                   test_batch_size=config.data.test_batch_size, device=device, rank=dist.rank,
                   world_size=dist.world_size, all_sum=dist.sum)
        epoch_size = task.epoch_size()
    except ValueError as err:                          # data too small for the batch sizes, ...
        raise TrainingError(str(err)) from None
    spec = task.model_spec()
    model = build_model(config, spec).to(device)
    net = dist.wrap(model, device)                     # DDP averages gradients across ranks
    optimizer = build_training_optimizer(config.optim, model.parameters())
    schedule = build_lr_schedule(config.optim, optimizer)
    stopper = EarlyStopping(config.train.patience) if config.train.patience else None
    precision = Precision(config.train.precision, device)
    state, carry = TrainingState(), None
    if resume:
        ckpt = load_checkpoint(run.last, map_location=device)
        _check_resumable(ckpt, spec, dist, config)
        model.load_state_dict(ckpt["model"])
        if ckpt["state"]["stage"] == "finetune":
            optimizer, schedule = finetune_optimizer(config.optim, model.parameters())
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        if stopper is not None:
            stopper.load_state_dict(ckpt["early_stopping"])
        task.load_state_dict(ckpt["task"])
        precision.load_state_dict(ckpt.get("precision"))
        restore_rng(ckpt["ranks"][dist.rank]["rng"])
        state, carry = TrainingState.from_dict(ckpt["state"]), ckpt["ranks"][dist.rank]["carry"]
        if dist.is_main:
            # The log as it stood at the checkpoint: what came after (even at the same step, such
            # as the final test record of a run killed while drawing its sample) is logged again.
            if state.records is None:                   # a checkpoint from before records were counted
                truncate_after(run.metrics, state.step)
                state.records = len(read_metrics(run.metrics)) if run.metrics.exists() else 0
            else:
                run.rewind_metrics(state.records)
    metrics = MetricsLog(run.metrics, enabled=dist.is_main)
    board = TensorBoardSink(run.tensorboard) if config.train.tensorboard and dist.is_main else None

    def record(entry: dict) -> None:
        metrics.log(entry)
        state.records += 1
        if board is not None:
            board.write(entry)

    def event(message: str) -> None:
        record({"kind": "event", "step": state.step, "epoch": state.epoch, "message": message})
        observer.on_event(message)
        log.info(message)

    def checkpoint() -> None:
        # Each rank's RNG and carried state, so a torchrun resume gives every rank its own back.
        ranks = dist.gather({"rng": capture_rng(), "carry": _plain(carry)})
        if dist.is_main:
            save_checkpoint(run.last, {
                "format": "rnnreg-run", "config": config_to_dict(config), "spec": spec.as_dict(),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "task": task.state_dict(),
                "early_stopping": stopper.state_dict() if stopper else None,
                "precision": precision.state_dict(), "state": state.as_dict(), "ranks": ranks,
                # A checkpoint right after a validation is its own rollback point.
                "rollback": None if good_step == state.step else
                {"model": good.model, "optimizer": good.optimizer, "step": good_step}})

    def validate() -> float:
        """Score the averaged weights; the best by the task's metric become best.pt. Returns the
        validation loss, which the schedules and early stopping watch."""
        with averaged_parameters(optimizer):
            scores = task.evaluate(model, "valid")
            if task.better(scores[task.metric], state.best_metric):
                state.best_metric, state.best_step = scores[task.metric], state.step
                if dist.is_main:
                    weights = {"format": "rnnreg-weights", "config": config_to_dict(config),
                               "spec": spec.as_dict(), "model": model.state_dict(),
                               "step": state.step, "scores": scores}
                    save_checkpoint(run.best, weights)
                    save_portable(run.best, weights)       # best.safetensors + best.json, no rnnreg needed
        model.train()
        state.validations += 1
        entry = {"kind": "eval", "step": state.step, "epoch": state.epoch, "split": "valid", **scores,
                 "averaged": isinstance(optimizer, NTASGD) and optimizer.averaging, "time": state.elapsed}
        record(entry)
        observer.on_eval(entry)
        return scores["loss"]

    observer.on_start({"run": str(run.path), "params": sum(p.numel() for p in model.parameters()),
                       "task": task.describe(), "epoch_size": epoch_size, "unit": task.unit,
                       # one position (a row of batched text, or a batch) holds this many units
                       # over all ranks: data.batch_size is the global batch for every task
                       "batch_size": config.data.batch_size,
                       "device": str(device), "world_size": dist.world_size, "metric": task.metric,
                       "resumed_at_step": state.step})
    # What a NaN or a divergence rolls back to: the last validated weights. A checkpoint taken
    # elsewhere (a stop, checkpoint_every) carries them, so a resumed run rolls back to the same.
    if resume and ckpt.get("rollback") is not None:
        good, good_step = Snapshot(ckpt["rollback"]["model"], ckpt["rollback"]["optimizer"]), ckpt["rollback"]["step"]
    else:
        good, good_step = Snapshot.take(model, optimizer), state.step
    status, budget_spent = "finished", False
    model.train()
    while not state.done:
        stage_epochs = config.train.epochs if state.stage == "train" else config.train.finetune_epochs
        observer.on_epoch_start(state.epoch, state.stage, epoch_size, state.position)
        clock = time.perf_counter()
        for position, batch in task.batches(state.epoch, state.position):
            # Merity et al. 2017 sec. 4.1: a longer window sums more losses, so its step is larger.
            base_lrs = [g["lr"] for g in optimizer.param_groups]
            for g in optimizer.param_groups:
                g["lr"] = g["lr"] * task.lr_scale(batch)
            carry = _detached(carry)                    # truncated BPTT: no gradient into the last batch
            # train.precision: the forward under autocast (bf16 / fp16), the loss in float32.
            with precision.autocast():
                out, next_carry = task.step(net, batch, carry)
                main = task.loss(out, batch).float()
            # The penalties, each logged apart from the task's loss (zero when off), in float32.
            terms = _penalties(config, out, model, main, task.lengths(batch), task.incoming_states(carry))
            loss = main + terms.ar + terms.tar + terms.norm_stabilizer + terms.weight
            optimizer.zero_grad(set_to_none=True)
            precision.backward(loss)                    # fp16: the loss scaled first
            precision.unscale(optimizer)                # clip the true gradients
            params = [p for p in model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.optim.clip if config.optim.clip else math.inf)
            main_value = main.item()
            fields = task.step_fields(batch, main_value)
            if state.start_loss is None:                # the first step: what divergence is measured against
                first = dist.sum(main_value)[0] / dist.world_size
                state.start_loss = first if math.isfinite(first) else None
            # A NaN or inf anywhere, or a loss that diverged while staying finite: roll back to the
            # last good validation and lower the lr, or stop.
            # Under fp16 loss scaling an overflowed gradient is the scaler's (it skips the step).
            problem = _problem(loss.item(), 0.0 if precision.skips_non_finite() else grad_norm.item(), main_value,
                               fields, state.start_loss, config.train.divergence_factor)
            if dist.any(problem is not None):
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr
                problem = problem or "a diverged or non-finite loss on another process"
                if config.train.nan_policy == "stop" or state.nan_recoveries >= config.train.max_nan_recoveries:
                    event(f"{problem} at step {state.step + 1}: stopping (train.nan_policy="
                          f"{config.train.nan_policy}, {state.nan_recoveries} recoveries so far)")
                    status, state.done = "failed", True
                    break
                state.nan_recoveries += 1
                precision.abandon()
                good.restore(model, optimizer)
                factor = config.train.nan_lr_factor ** state.nan_recoveries
                for g in optimizer.param_groups:
                    g["lr"] *= factor
                carry = None
                event(f"{problem} at step {state.step + 1}: restored the last good weights, "
                      f"lr x{factor:g}, skipped this batch")
                continue
            precision.step(optimizer)
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr
            # Bookkeeping: the carried state, where the epoch stands, the clock, the log.
            carry, state.step, state.position = next_carry, state.step + 1, position
            count = task.count(batch)
            state.epoch_loss += main_value * count
            state.epoch_count += count
            now = time.perf_counter()
            state.elapsed += now - clock
            rate = count * dist.world_size / max(now - clock, 1e-9)
            clock = now
            if state.step % config.train.log_every == 0 or state.step == 1:
                record({"kind": "step", "step": state.step, "epoch": state.epoch, "lr": base_lrs[0],
                        "loss": main_value, **fields, **precision.fields(), "penalties": terms.record(),
                        "grad_norm": grad_norm.item(), "time": state.elapsed, f"{task.unit}_per_s": rate})
            observer.on_step(state.step, state.position, main_value, rate)
            # Budgets, periodic validations and checkpoints, stop requests: decided together by
            # every rank (a rank that branched alone would hang the others' collectives).
            out_of_budget = ((config.train.max_steps and state.step >= config.train.max_steps)
                             or (config.train.max_minutes and state.elapsed >= 60 * config.train.max_minutes))
            out_of_budget = dist.any(bool(out_of_budget))  # ranks' clocks differ; all stop at once
            if config.train.eval_every and state.step % config.train.eval_every == 0 and not out_of_budget:
                validate()
                good, good_step = Snapshot.take(model, optimizer), state.step
                checkpoint()
            elif config.train.checkpoint_every and state.step % config.train.checkpoint_every == 0:
                checkpoint()
            if dist.any(stop_requested()):
                event(f"stop requested: checkpoint saved at step {state.step}; resume with --resume")
                checkpoint()
                status, state.done = "stopped", True
                break
            if out_of_budget:
                event(f"training budget reached at step {state.step} ({state.elapsed / 60:.1f} min)")
                state.done = budget_spent = True
                break
            clock = time.perf_counter()               # validation and checkpoints are not training time
        if status != "finished":                      # stopped or failed: no end-of-epoch validation
            break
        # End of an epoch (or of the budget): validate, let the schedules react, checkpoint.
        val_loss = validate()
        good, good_step = Snapshot.take(model, optimizer), state.step
        train_loss = state.epoch_loss / max(state.epoch_count, 1)
        record({"kind": "epoch", "epoch": state.epoch, "step": state.step, "train_loss": train_loss,
                "valid_loss": val_loss, "lr": optimizer.param_groups[0]["lr"], "time": state.elapsed})
        observer.on_epoch_end(state.epoch, train_loss, val_loss)
        if state.stage == "finetune" and optimizer.trigger.check(val_loss):
            event("finetune: validation stopped improving (non-monotone criterion); done")
            state.done = True
        elif isinstance(optimizer, NTASGD) and state.stage == "train" and optimizer.observe(val_loss):
            event(f"non-monotone trigger: switched to averaged SGD at epoch {state.epoch}")
        schedule.epoch_end(state.stage_epoch, val_loss)
        if stopper is not None and stopper.update(val_loss):
            event(f"early stopping: no improvement for {config.train.patience} validations")
            state.done = True
        if state.stage_epoch >= stage_epochs or budget_spent:
            state.done = True
        if state.done and state.stage == "train" and config.train.finetune_epochs and not budget_spent:
            # AWD-LSTM's finetune.py: restart from the best weights, averaging from the first step.
            dist.barrier()                              # rank 0 may still be writing best.pt
            model.load_state_dict(load_checkpoint(run.best, map_location=device)["model"])
            optimizer, schedule = finetune_optimizer(config.optim, model.parameters())
            state.stage, state.stage_epoch, state.done = "finetune", 0, False
            good, good_step = Snapshot.take(model, optimizer), state.step  # the old one is of another optimizer
            event("finetune stage: restarted from the best weights with averaging on")
        state.next_epoch()
        carry = None                                    # each epoch starts from a zero state (AWD-LSTM)
        checkpoint()
    summary = finish_run(config, run, task, model, state, status, dist, device, record, budget_spent=budget_spent)
    metrics.close()
    if board is not None:
        board.close()
    observer.on_end(summary)
    del net                                           # DDP's reducer before its process group
    dist.stop()
    return summary


def _penalties(config: Config, out, model: torch.nn.Module, like: torch.Tensor, lengths, incoming):
    try:
        return penalty_terms(config.penalties, out, model.parameters(), like=like, lengths=lengths,
                             incoming=incoming)
    except PenaltyError as err:
        raise TrainingError(str(err)) from None


def _problem(loss: float, grad_norm: float, main: float, fields: dict, start: float | None,
             factor: float) -> str | None:
    """Why this step must not be taken, or None. Adam at lr 1e30 keeps its loss finite (valid bpc
    3.9e+32) and used to "finish": a loss ``factor`` times the first step's, or one whose metric
    overflows (a perplexity past exp(709)), counts like a NaN."""
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return "non-finite loss"
    if factor and start is not None and start > 0 and main > factor * start:
        return f"diverged loss {main:.4g} (over train.divergence_factor={factor:g} x the first step's {start:.4g})"
    overflowed = [k for k, v in fields.items() if isinstance(v, float) and math.isinf(v)]
    if factor and overflowed:
        return f"diverged loss {main:.4g} ({overflowed[0]} overflows)"
    return None


def _check_resumable(ckpt: dict, spec: ModelSpec, dist: Distributed, config: Config) -> None:
    """The checkpoint was written for this task's data, by as many processes as this run has,
    under this config but for budgets and outputs (config.toml edited by hand since, say to
    another train.precision, would continue it as a run it never was)."""
    if ckpt.get("format") != "rnnreg-run":
        raise TrainingError(f"the checkpoint is in the {ckpt.get('format')!r} format of an older rnnreg "
                            "and cannot be resumed; evaluate it with `rnnreg eval` or start a new run")
    differences = ModelSpec.from_dict(ckpt["spec"]).differences(spec)
    if differences:
        raise TrainingError(f"the checkpoint's {', '.join(differences)} does not match this data's: "
                            "was the dataset changed?")
    if len(ckpt["ranks"]) != dist.world_size:
        raise TrainingError(f"the checkpoint was written by {len(ckpt['ranks'])} processes; "
                            f"resume it with the same number (this run has {dist.world_size})")
    mismatch = trained_config_mismatch(ckpt["config"], config)  # after the data's, more telling
    if mismatch:
        raise TrainingError(mismatch)


def _detached(state: Any) -> Any:
    """The same nested lists / tuples / named tuples of tensors, cut from the graph."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (list, tuple)):
        items = [_detached(s) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else type(state)(items)
    return state


def _plain(value: Any) -> Any:
    """Recurrent state as plain lists / tuples of tensors (a checkpoint holds no custom classes)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):                      # named tuples become plain ones
        return tuple(_plain(v) for v in value)
    return value
