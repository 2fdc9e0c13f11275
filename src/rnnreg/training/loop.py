"""The training loop for recurrent language models: one function, top to bottom.

One step (Merity et al. 2017, sec. 4): draw a window length, scale the learning rate by
length / bptt, run the model from the detached carried state, add the penalties to the
cross-entropy at the call site, clip, step. One validation: evaluate on the averaged weights,
let NT-ASGD's non-monotone trigger, the lr schedule and early stopping see the loss, keep the
best weights. Checkpoints after every validation hold everything needed to resume exactly.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .. import penalties
from ..tasks.build_lm import build_corpus, build_lr_schedule, build_model, build_training_optimizer, metric_for, needs_cells
from ..runs.checkpoint import load_checkpoint, save_checkpoint
from ..config import Config, config_to_dict
from ..data import BPTTSchedule, Corpus, batchify, get_batch, shard_columns
from .distributed import Distributed
from ..tasks.lm_evaluation import evaluate
from .finish import finish_run
from ..runs.metrics import MetricsLog, TensorBoardSink, metric_fields, truncate_after
from ..optim import EarlyStopping, NTASGD, averaged_parameters, build_scheduler
from .progress import NullObserver, Observer
from .rng import capture_rng, restore_rng
from ..runs.run_dir import RunDir
from .snapshots import Snapshot
from .state import TrainingState

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN the policy does not recover from, a broken resume)."""


def train(config: Config, run: RunDir, *, resume: bool = False, corpus: Corpus | None = None,
          observer: Observer | None = None, stop_requested: Callable[[], bool] = lambda: False) -> dict:
    """Train ``config`` in ``run`` (fresh, or from its last checkpoint with ``resume``); returns
    the summary written to ``run/summary.json``. ``corpus`` saves loading the data again when the
    caller already has it. ``stop_requested`` is polled after every step
    (the CLI sets it on SIGINT / SIGTERM): the run then checkpoints and returns, status "stopped"."""
    observer = observer or NullObserver()
    dist = Distributed.from_env()
    device = dist.device(config.train.device)
    dist.start(device)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed + dist.rank)  # different dropout masks per rank
    corpus = corpus if corpus is not None else build_corpus(config.data)
    metric = metric_for(config, corpus)
    vocab_size = len(corpus.vocab)
    model = build_model(config.model, vocab_size, return_cells=needs_cells(config)).to(device)
    net = dist.wrap(model, device)
    optimizer = build_training_optimizer(config.optim, model.parameters())
    schedule = build_lr_schedule(config.optim, optimizer)
    stopper = EarlyStopping(config.train.patience) if config.train.patience else None
    bptt = BPTTSchedule(config.data.bptt, variable=config.data.variable_bptt, p=config.data.bptt_p,
                        std=config.data.bptt_std, min_len=config.data.min_bptt,
                        max_delta=config.data.max_bptt_delta, seed=config.train.seed)
    # (N, B) time-major columns; each rank keeps a contiguous share of them.
    train_data = shard_columns(_batches(corpus, "train", config.data.batch_size), dist.rank,
                               dist.world_size).to(device)
    valid_data = _eval_split(corpus, config.data.eval_batch_size, dist).to(device)
    _batches(corpus, "test", config.data.test_batch_size)       # fail now, not after training
    state, hidden = TrainingState(), None
    if resume:
        ckpt = load_checkpoint(run.last, map_location=device)
        _check_vocab(ckpt, corpus)
        model.load_state_dict(ckpt["model"])
        if ckpt["state"]["stage"] == "finetune":
            optimizer, schedule = _finetune_optimizer(config, model)
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        if stopper is not None:
            stopper.load_state_dict(ckpt["early_stopping"])
        bptt.load_state_dict(ckpt["bptt"])
        if len(ckpt["ranks"]) != dist.world_size:
            raise TrainingError(f"the checkpoint was written by {len(ckpt['ranks'])} processes; "
                                f"resume it with the same number (this run has {dist.world_size})")
        restore_rng(ckpt["ranks"][dist.rank]["rng"])
        state, hidden = TrainingState.from_dict(ckpt["state"]), ckpt["ranks"][dist.rank]["hidden"]
        if dist.is_main:
            truncate_after(run.metrics, state.step)
    metrics = MetricsLog(run.metrics, enabled=dist.is_main)
    board = TensorBoardSink(run.tensorboard) if config.train.tensorboard and dist.is_main else None

    def record(entry: dict) -> None:
        metrics.log(entry)
        if board is not None:
            board.write(entry)

    def event(message: str) -> None:
        record({"kind": "event", "step": state.step, "epoch": state.epoch, "message": message})
        observer.on_event(message)
        log.info(message)

    def checkpoint() -> None:
        # Each rank's RNG and carried state, so a torchrun resume gives every rank its own back.
        ranks = dist.gather({"rng": capture_rng(), "hidden": _plain(hidden)})
        if dist.is_main:
            save_checkpoint(run.last, {
                "format": "rnnreg-lm", "config": config_to_dict(config), "vocab": corpus.vocab.to_list(),
                "level": corpus.level, "dataset": corpus.name,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "bptt": bptt.state_dict(),
                "early_stopping": stopper.state_dict() if stopper else None,
                "state": state.as_dict(), "ranks": ranks})

    def validate() -> float:
        """Validation on the averaged weights; the best of them become best.pt."""
        with averaged_parameters(optimizer):
            loss = evaluate(model, valid_data, config.data.bptt, dist=dist)
            if loss < state.best_valid:
                state.best_valid, state.best_step = loss, state.step
                if dist.is_main:
                    save_checkpoint(run.best, {"format": "rnnreg-lm-weights", "config": config_to_dict(config),
                                               "vocab": corpus.vocab.to_list(), "level": corpus.level,
                                               "dataset": corpus.name, "model": model.state_dict(),
                                               "step": state.step, "valid_loss": loss})
        model.train()
        state.validations += 1
        entry = {"kind": "eval", "step": state.step, "epoch": state.epoch, "split": "valid",
                 **metric_fields(loss, metric), "averaged": isinstance(optimizer, NTASGD) and optimizer.averaging, "time": state.elapsed}
        record(entry)
        observer.on_eval(entry)
        return loss

    observer.on_start({"run": str(run.path), "params": sum(p.numel() for p in model.parameters()),
                       "train_tokens": corpus.train.numel(), "vocab": vocab_size, "device": str(device),
                       "world_size": dist.world_size, "metric": metric, "resumed_at_step": state.step})
    good = Snapshot.take(model, optimizer)       # what a NaN rolls back to
    status, clock, budget_spent = "finished", time.perf_counter(), False
    n_rows = train_data.shape[0]
    model.train()
    while not state.done:
        stage_epochs = config.train.epochs if state.stage == "train" else config.train.finetune_epochs
        observer.on_epoch_start(state.epoch, state.stage, n_rows, state.position)
        interrupted = False
        window_clock = time.perf_counter()
        for i, seq_len in bptt.windows(n_rows, start=state.position):
            x, y = get_batch(train_data, i, seq_len)        # (T, B_r), (T, B_r)
            base_lrs = [g["lr"] for g in optimizer.param_groups]
            for g in optimizer.param_groups:                # Merity et al. 2017 sec. 4.1
                g["lr"] = g["lr"] * bptt.lr_scale(x.shape[0])
            hidden = model.detach_state(hidden) if hidden is not None else None
            out = net(x, hidden)
            logits = out.logits.float()                     # the loss in float32 whatever the model runs in
            ce = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))  # (T*B_r, V) vs (T*B_r,)
            pen = config.penalties
            ar = penalties.ar(out.dropped[-1], pen.ar)              # AR on the dropped output
            tar = penalties.tar(out.raw[-1], pen.tar)               # TAR on the raw output
            norm = sum((penalties.norm_stabilizer(seq, pen.norm_stabilizer, h0, pen.norm_stabilizer_cost,
                                                  pen.norm_stabilizer_target)
                        for seq, h0 in _stabilized(config, out, hidden)), ce.new_zeros(()))
            weight = penalties.elastic_net(model.parameters(), pen.l1, pen.l2) if pen.l1 or pen.l2 else ce.new_zeros(())
            loss = ce + ar + tar + norm + weight
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.optim.clip if config.optim.clip else math.inf)
            if dist.any(not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item()))):
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr
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
                hidden = None
                event(f"non-finite loss at step {state.step + 1}: restored the last good weights, "
                      f"lr x{factor:g}, skipped this window")
                continue
            optimizer.step()
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr
            hidden = out.state
            state.step += 1
            state.position = i + x.shape[0]
            tokens = y.numel() * dist.world_size
            ce_value = ce.item()
            state.epoch_loss += ce_value * y.numel()
            state.epoch_tokens += y.numel()
            now = time.perf_counter()
            state.elapsed += now - clock
            clock = now
            tokens_per_s = tokens / max(now - window_clock, 1e-9)
            if state.step % config.train.log_every == 0 or state.step == 1:
                entry = {"kind": "step", "step": state.step, "epoch": state.epoch, "lr": base_lrs[0],
                         "seq_len": x.shape[0], **metric_fields(ce_value, metric),
                         "penalties": {"ar": ar.item(), "tar": tar.item(), "norm_stabilizer": norm.item(),
                                       "weight": weight.item()},
                         "grad_norm": grad_norm.item(), "time": state.elapsed,
                         "tokens_per_s": tokens_per_s}
                record(entry)
            observer.on_step(state.step, state.position, ce_value, tokens_per_s)
            window_clock = now
            out_of_budget = ((config.train.max_steps and state.step >= config.train.max_steps)
                             or (config.train.max_minutes and state.elapsed >= 60 * config.train.max_minutes))
            out_of_budget = dist.any(bool(out_of_budget))  # ranks' clocks differ; all stop at once
            if config.train.eval_every and state.step % config.train.eval_every == 0 and not out_of_budget:
                validate()
                good = Snapshot.take(model, optimizer)
                checkpoint()
            elif config.train.checkpoint_every and state.step % config.train.checkpoint_every == 0:
                checkpoint()
            if dist.any(stop_requested()):
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
        if state.stage == "finetune" and optimizer.trigger.check(val_loss):
            event("finetune: validation stopped improving (non-monotone criterion); done")
            state.done = True
        elif isinstance(optimizer, NTASGD) and state.stage == "train" and optimizer.observe(val_loss):
            event(f"non-monotone trigger: switched to averaged SGD at epoch {state.epoch}")
        schedule.epoch_end(state.stage_epoch, val_loss)
        if stopper is not None and stopper.update(val_loss):
            event(f"early stopping: no improvement for {config.train.patience} validations")
            state.done = True
        if state.stage_epoch >= stage_epochs:
            state.done = True
        if state.done and state.stage == "train" and config.train.finetune_epochs and not budget_spent:
            # AWD-LSTM's finetune.py: restart from the best weights, averaging from the first step.
            dist.barrier()                              # rank 0 may still be writing best.pt
            model.load_state_dict(load_checkpoint(run.best, map_location=device)["model"])
            optimizer, schedule = _finetune_optimizer(config, model)
            state.stage, state.stage_epoch, state.done, hidden = "finetune", 0, False, None
            event("finetune stage: restarted from the best weights with averaging on")
        state.next_epoch()
        hidden = None                                   # each epoch starts from a zero state (AWD-LSTM)
        checkpoint()
    summary = finish_run(config, run, corpus, model, metric, state, status, dist, device, record)
    metrics.close()
    if board is not None:
        board.close()
    observer.on_end(summary)
    dist.stop()
    return summary


def _finetune_optimizer(config: Config, model: torch.nn.Module):
    """AWD-LSTM's finetune.py: averaged SGD from the first step at the base lr, no schedule."""
    optimizer = NTASGD(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay,
                       n=config.optim.nonmono, rule=config.optim.trigger_rule)
    optimizer.start_averaging()
    return optimizer, build_scheduler("none", optimizer, factor=1.0, start_epoch=0, patience=0)


def _stabilized(config: Config, out, hidden) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The (T, B, H) sequences the norm-stabilizer penalises, each with its incoming state (B, H)
    so the first step of a window is compared with the last of the previous one."""
    pen = config.penalties
    if pen.norm_stabilizer == 0.0:
        return []
    layers = pen.norm_stabilizer_layers or range(len(out.raw))
    cells = pen.norm_stabilizer_on == "cell"
    pairs = []
    for layer in layers:
        seq = out.cells[layer] if cells else out.raw[layer]
        h0 = None
        if hidden is not None:
            state = hidden[layer]
            h0 = (state[1] if cells else state[0]) if isinstance(state, tuple) else state
            h0 = h0[0]                                   # (1, B, H) -> (B, H)
        pairs.append((seq, h0))
    return pairs


def _batches(corpus: Corpus, split: str, batch_size: int) -> torch.Tensor:
    """(N // B, B) columns of a split, or a TrainingError that names the setting to change."""
    key = {"train": "batch_size", "valid": "eval_batch_size", "test": "test_batch_size"}[split]
    try:
        return batchify(getattr(corpus, split), batch_size)  # (N,) -> (N // B, B)
    except ValueError as err:
        raise TrainingError(f"{corpus.name} {split} split: {err}; lower data.{key}") from None


def _eval_split(corpus: Corpus, batch_size: int, dist: Distributed) -> torch.Tensor:
    """(N, B) columns of the validation split, shared out across ranks when B allows. Otherwise
    every rank evaluates all of it; summing identical totals and counts leaves the mean as is."""
    batched = _batches(corpus, "valid", batch_size)  # (N,) -> (N // B, B)
    if dist.enabled and batch_size % dist.world_size == 0:
        return shard_columns(batched, dist.rank, dist.world_size)
    return batched


def _check_vocab(ckpt: dict, corpus) -> None:
    if ckpt["vocab"] != corpus.vocab.to_list():
        raise TrainingError(f"the checkpoint's vocabulary ({len(ckpt['vocab'])} tokens) does not match "
                            f"the corpus's ({len(corpus.vocab)} tokens): was the dataset changed?")


def _plain(value):
    """Recurrent state as plain lists / tuples of tensors (a checkpoint holds no custom classes)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):                      # named tuples become plain ones
        return tuple(_plain(v) for v in value)
    return value
