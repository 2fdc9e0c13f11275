"""The training loop: it learns, writes its run, resumes bit for bit, survives NaNs, stops on time."""

from __future__ import annotations

import json
import math

import pytest
import torch

import rnnreg.tasks.language_model as lm_task_module
from rnnreg.runs.checkpoint import load_checkpoint
from rnnreg.runs.metrics import read_metrics
from rnnreg.runs.run_dir import new_run_dir
from rnnreg.training.loop import TrainingError, train

from lm_fixtures import tiny_config, write_corpus

pytestmark = pytest.mark.slow  # trains models or starts processes

VOLATILE = ("time", "tokens_per_s")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def run_training(config, **kw):
    run = new_run_dir(config.train.out_dir, config.name)
    run.write_config(config)
    return run, train(config, run, **kw)


def stable(records):
    """Metric records without the wall-clock fields, which legitimately differ between runs."""
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def test_training_learns_and_writes_the_run(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=3", "optim.optimizer=adam", "optim.lr=0.01",
                         "model.weight_p=0.1", "model.input_p=0.1", "model.output_p=0.1")
    run, summary = run_training(config)
    vocab = len(load_checkpoint(run.best)["spec"]["vocab"])
    assert summary["status"] == "finished" and summary["metric"] == "ppl"
    assert summary["valid"] < vocab / 2 and summary["test"] < vocab / 2   # uniform guessing scores ~vocab
    for path in (run.config, run.metrics, run.summary, run.best, run.last, run.sample):
        assert path.is_file(), path
    records = read_metrics(run.metrics)
    kinds = {r["kind"] for r in records}
    assert {"step", "eval", "epoch"} <= kinds
    step = next(r for r in records if r["kind"] == "step")
    # The cross-entropy is logged apart from the penalties (AR / TAR are on in the AWD preset).
    assert step["penalties"]["ar"] > 0 and step["penalties"]["tar"] > 0
    assert math.isclose(step["ppl"], math.exp(step["loss"]), rel_tol=1e-9)
    tests = [r for r in records if r["kind"] == "eval" and r["split"] == "test"]
    assert len(tests) == 1 and math.isclose(math.exp(tests[0]["loss"]), summary["test"], rel_tol=1e-3)
    assert json.loads(run.summary.read_text())["valid"] == summary["valid"]


def test_stopped_run_resumes_bit_for_bit(corpus_dir, tmp_path):
    """Stop part-way (as SIGINT does), resume, and get exactly the uninterrupted run's numbers."""
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=2", "train.threads=1")
    whole_run, whole = run_training(config)
    calls = {"n": 0}

    def stop_after_60():
        calls["n"] += 1
        return calls["n"] == 60                                # mid-way through the first epoch

    part_run, stopped = run_training(config, stop_requested=stop_after_60)
    assert stopped["status"] == "stopped" and stopped["steps"] == 60
    _, resumed = run_training_in(part_run, config, resume=True)
    assert resumed["status"] == "finished"
    assert (resumed["valid"], resumed["test"], resumed["steps"]) == (whole["valid"], whole["test"], whole["steps"])
    part, full = stable(read_metrics(part_run.metrics)), stable(read_metrics(whole_run.metrics))
    stop_event = part.pop(60)
    assert stop_event["message"].startswith("stop requested") and part == full
    a, b = load_checkpoint(whole_run.best)["model"], load_checkpoint(part_run.best)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def run_training_in(run, config, **kw):
    return run, train(config, run, **kw)


def test_resume_refuses_a_changed_vocabulary(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.max_steps=5")
    run, _ = run_training(config, stop_requested=lambda: True)   # stopped: a finished run is not resumed
    other = write_corpus(tmp_path / "other", seed=1, lines=(50, 5, 5))
    (other / "train.txt").write_text("completely new words here\n" * 50)
    changed = tiny_config(other, tmp_path)
    with pytest.raises(TrainingError, match="vocabulary"):
        train(changed, run, resume=True)


def test_truncated_last_checkpoint_falls_back_to_the_previous(corpus_dir, tmp_path, caplog):
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=2")
    run, _ = run_training(config)
    data = run.last.read_bytes()
    run.last.write_bytes(data[: len(data) // 2])
    payload = load_checkpoint(run.last)
    assert payload["state"]["epoch"] == 2          # last.pt.prev: the checkpoint before the final one
    assert "truncated" in caplog.text or "corrupt" in caplog.text


def _nan_on_call(n):
    """The language model task's loss, NaN on its n-th training call."""
    calls, loss = {"n": 0}, lm_task_module.LanguageModelTask.loss

    def nan_loss(self, output, batch):
        out = loss(self, output, batch)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == n:
                return out * float("nan")
        return out
    return nan_loss


def test_nan_loss_restores_the_last_good_state_and_lowers_the_lr(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_task_module.LanguageModelTask, "loss", _nan_on_call(30))
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1", "train.eval_every=20")
    run, summary = run_training(config)
    assert summary["status"] == "finished" and math.isfinite(summary["valid"])
    events = [r["message"] for r in read_metrics(run.metrics) if r["kind"] == "event"]
    assert any("non-finite loss at step 30" in m and "lr x0.5" in m for m in events)
    lrs = [r["lr"] for r in read_metrics(run.metrics) if r["kind"] == "step"]
    assert lrs[0] == 20.0 and lrs[-1] == 10.0
    weights = load_checkpoint(run.last)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_nan_policy_stop_ends_the_run_cleanly(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_task_module.LanguageModelTask, "loss", _nan_on_call(10))
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1", "train.nan_policy=stop")
    run, summary = run_training(config)
    assert summary["status"] == "failed" and summary["steps"] == 9
    assert json.loads(run.summary.read_text())["status"] == "failed"


def test_trigger_and_early_stopping_react_to_validation(corpus_dir, tmp_path, monkeypatch):
    losses = iter([3.0, 2.9, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6])
    monkeypatch.setattr(lm_task_module, "evaluate", lambda *a, **k: next(losses))
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=8", "train.patience=3", "optim.nonmono=1",
                         "train.max_steps=0", "train.sample_length=0")
    run, summary = run_training(config)
    events = [r["message"] for r in read_metrics(run.metrics) if r["kind"] == "event"]
    # Code rule (AWD-LSTM): at the third check, 3.1 > min([3.0]) with n = 1.
    assert any("switched to averaged SGD at epoch 3" in m for m in events)
    assert any("early stopping" in m for m in events)
    assert summary["epochs"] == 5                  # 2.9 was the best; three worse validations follow
    assert load_checkpoint(run.last)["optimizer"]["nt_asgd"]["averaging"] is True


def test_finetune_stage_restarts_from_best_with_averaging(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1", "train.finetune_epochs=2")
    run, summary = run_training(config)
    events = [r["message"] for r in read_metrics(run.metrics) if r["kind"] == "event"]
    assert any("finetune stage" in m for m in events)
    assert summary["finetuned"] and summary["epochs"] == 3
    last = load_checkpoint(run.last)
    assert last["state"]["stage"] == "finetune" and last["optimizer"]["nt_asgd"]["averaging"] is True


def test_finetune_stage_runs_at_its_own_lr(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1", "train.finetune_epochs=1", "optim.finetune_lr=7.5")
    run, _ = run_training(config)
    steps = [r for r in read_metrics(run.metrics) if r["kind"] == "step"]
    assert {r["lr"] for r in steps if r["epoch"] == 1} == {20.0} and {r["lr"] for r in steps if r["epoch"] == 2} == {7.5}


def test_step_budget_ends_with_a_validation_and_test(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.max_steps=7")
    run, summary = run_training(config)
    assert summary["steps"] == 7 and summary["status"] == "finished" and summary["test"] is not None
    evals = [r for r in read_metrics(run.metrics) if r["kind"] == "eval" and r["split"] == "valid"]
    assert [r["step"] for r in evals] == [7]
    assert summary["best_step"] == load_checkpoint(run.best)["step"] == 7  # the weights test was scored from


@pytest.mark.parametrize("extra", [
    ["penalties.norm_stabilizer=10.0", "penalties.norm_stabilizer_on=cell", "model.zoneout_c_p=0.2"],
    ["model.surprisal_zoneout=true", "model.num_layers=1", "model.tie_weights=false"],
    ["model.cell=gru", "penalties.norm_stabilizer=5.0", "penalties.l2=1e-5", "penalties.l1=1e-6"],
])
def test_variants_train_checkpoint_and_resume(corpus_dir, tmp_path, extra):
    config = tiny_config(corpus_dir, tmp_path, "train.max_steps=6", "train.checkpoint_every=3", *extra)
    calls = {"n": 0}

    def stop_at_4():
        calls["n"] += 1
        return calls["n"] == 4

    run, stopped = run_training(config, stop_requested=stop_at_4)
    assert stopped["status"] == "stopped"
    summary = train(config, run, resume=True)
    assert summary["status"] == "finished" and summary["steps"] == 6 and math.isfinite(summary["valid"])
    records = read_metrics(run.metrics)
    penalty = records[0]["penalties"]
    if "penalties.norm_stabilizer=10.0" in extra or "penalties.norm_stabilizer=5.0" in extra:
        assert penalty["norm_stabilizer"] > 0


def test_spent_budget_skips_the_finetune_stage(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.max_steps=5", "train.finetune_epochs=3")
    run, summary = run_training(config)
    events = [r["message"] for r in read_metrics(run.metrics) if r["kind"] == "event"]
    assert summary["steps"] == 5 and not summary["finetuned"]
    assert not any("finetune" in m for m in events)
