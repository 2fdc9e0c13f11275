"""The run lifecycle: resuming is idempotent, the final records are written once whatever is
interrupted, overrides on resume are budgets and outputs only, and a diverged loss is a NaN."""

from __future__ import annotations

import math

import pytest

from rnnreg.cli import main
from rnnreg.config import ConfigError, load_config
from rnnreg.runs.checkpoint import load_checkpoint
from rnnreg.runs.lock import RunLock
from rnnreg.runs.metrics import read_metrics
from rnnreg.runs.run_dir import RunDir, new_run_dir
from rnnreg.tasks.build import build_task
from rnnreg.training.loop import TrainingError, _problem, train
from rnnreg.training.state import TrainingState

from lm_fixtures import stop_after, tiny_config, write_corpus

VOLATILE = ("time", "tokens_per_s")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def new_run(config) -> RunDir:
    run = new_run_dir(config.train.out_dir, config.name)
    run.write_config(config)
    return run


def files(run: RunDir) -> dict:
    """Every file of the run: its bytes and modification time (a rewrite changes the time)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.path.rglob("*") if p.is_file()}


def stable(run: RunDir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_metrics(run.metrics)]


@pytest.mark.slow
def test_resuming_a_finished_run_changes_nothing(corpus_dir, tmp_path, capsys):
    config = tiny_config(corpus_dir, tmp_path, "train.max_steps=6")
    run = new_run(config)
    finished = train(config, run)
    before = files(run)
    again = train(config, run, resume=True)
    assert again["status"] == "finished" and again["test"] == finished["test"]
    assert files(run) == before                        # no second test record, nothing rewritten
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert files(run) == before
    # Overrides could only be ignored on a finished run: refused in one line, nothing written.
    assert main(["train", "--resume", str(run.path), "train.max_steps=20"]) == 2
    err = capsys.readouterr().err
    assert "is finished" in err and len(err.strip().splitlines()) == 1
    assert files(run) == before


@pytest.mark.slow
def test_a_kill_while_the_sample_is_drawn_records_the_test_once(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.max_steps=8", "train.threads=1")
    whole = new_run(config)
    train(config, whole)
    task = build_task(config)

    def killed(*args, **kwargs):                       # the test record is written, the sample is not
        raise KeyboardInterrupt
    task.finish = killed
    part = new_run(config)
    with pytest.raises(KeyboardInterrupt):
        train(config, part, task=task)
    assert [r["split"] for r in read_metrics(part.metrics) if r["kind"] == "eval"][-1] == "test"
    resumed = train(config, part, resume=True)
    assert resumed["status"] == "finished" and part.sample.is_file()
    assert stable(part) == stable(whole)               # one test record, as in an uninterrupted run
    assert [r["split"] for r in read_metrics(part.metrics) if r["kind"] == "eval"].count("test") == 1


def test_a_checkpoint_from_before_record_counts_resumes_by_step():
    assert TrainingState.from_dict({"step": 4}).records is None
    assert TrainingState().records == 0


def test_resume_overrides_are_budgets_and_outputs_only(tmp_path):
    run = new_run(load_config("quickstart", [f"train.out_dir={tmp_path}"]))
    allowed = run.resume_config(["train.max_steps=9", "train.eval_every=3", "data.cache_dir=/tmp/c",
                                 "train.device=cpu", "optim.lr=0.004"])  # lr: quickstart's own value
    assert (allowed.train.max_steps, allowed.train.eval_every, allowed.data.cache_dir) == (9, 3, "/tmp/c")
    with pytest.raises(ConfigError, match=r"not model\.hidden_size, optim\.lr;") as refused:
        run.resume_config(["train.max_steps=9", "optim.lr=1.0", "model.hidden_size=8"])
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_overrides_on_resume_are_written_to_config_toml_or_refused(corpus_dir, tmp_path, capsys):
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1")
    run = new_run(config)
    assert train(config, run, stop_requested=stop_after(3))["status"] == "stopped"
    before = files(run)
    assert main(["train", "--resume", str(run.path), "optim.lr=1.0"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and len(err.strip().splitlines()) == 1
    assert files(run) == before
    assert main(["train", "--resume", str(run.path), "--quiet", "train.max_steps=7"]) == 0
    assert run.read_config().train.max_steps == 7
    assert run.read_summary()["steps"] == 7


@pytest.mark.slow
@pytest.mark.parametrize("policy, events", [("stop", 1), ("recover", 4)])
def test_a_finite_divergence_counts_as_a_nan(corpus_dir, tmp_path, policy, events):
    # Adam at lr 1e30: the loss jumps from ~3 to ~1e30 and stays finite.
    config = tiny_config(corpus_dir, tmp_path, "optim.optimizer=adam", "optim.lr=1e30", "train.max_steps=30",
                         f"train.nan_policy={policy}")
    run = new_run(config)
    summary = train(config, run)
    messages = [r["message"] for r in read_metrics(run.metrics) if r["kind"] == "event"]
    assert summary["status"] == "failed"
    # The first event is the finite divergence; after a recovery at lr x0.125 the loss may diverge
    # finitely again or overflow, depending on the CPU's arithmetic: both count towards the policy.
    assert len([m for m in messages if m.startswith(("diverged loss", "non-finite loss"))]) == events, messages
    assert messages[0].startswith("diverged loss") and "train.divergence_factor=100" in messages[0]
    assert "stopping" in messages[-1], messages


@pytest.mark.slow
def test_a_resumed_run_rolls_back_to_the_same_weights(corpus_dir, tmp_path):
    # Stopped at step 1, before any validation: the rollback point is still the initial weights.
    config = tiny_config(corpus_dir, tmp_path, "optim.optimizer=adam", "optim.lr=1e30", "train.max_steps=30",
                         "train.threads=1")
    whole = new_run(config)
    train(config, whole)
    part = new_run(config)
    assert train(config, part, stop_requested=stop_after(1))["status"] == "stopped"
    assert train(config, part, resume=True)["status"] == "failed"
    assert [r for r in stable(part) if not r.get("message", "").startswith("stop")] == stable(whole)


@pytest.mark.slow
def test_divergence_factor_zero_turns_it_off(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "optim.optimizer=adam", "optim.lr=1e30", "train.max_steps=5",
                         "train.divergence_factor=0")
    assert train(config, new_run(config))["status"] == "finished"


@pytest.mark.slow
def test_the_starting_loss_is_kept_across_a_resume(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1", "train.max_steps=8")
    run = new_run(config)
    train(config, run, stop_requested=stop_after(4))
    train(config, run, resume=True)
    first = next(r["loss"] for r in read_metrics(run.metrics) if r["kind"] == "step")
    assert load_checkpoint(run.last)["state"]["start_loss"] == first


def test_a_loss_whose_metric_overflows_is_diverged():
    assert _problem(800.0, 1.0, 800.0, {"ppl": math.inf}, 7.0, 1000.0) == "diverged loss 800 (ppl overflows)"
    assert _problem(800.0, 1.0, 800.0, {"ppl": math.inf}, 7.0, 0.0) is None
    assert _problem(math.nan, 1.0, math.nan, {}, 7.0, 0.0) == "non-finite loss"
    assert _problem(3.0, 1.0, 3.0, {"ppl": 20.1}, 0.0, 100.0) is None   # a first loss of 0: no scale


@pytest.mark.parametrize("factor", ["1.0", "0.5", "-1.0"])
def test_divergence_factor_is_zero_or_above_one(factor):
    with pytest.raises(ConfigError, match="train.divergence_factor must be 0"):
        load_config("quickstart", [f"train.divergence_factor={factor}"])


@pytest.mark.slow
def test_a_hand_edited_config_toml_is_not_resumed_as_if_it_had_trained_the_checkpoint(corpus_dir, tmp_path, capsys):
    """Overrides on --resume are checked (above); config.toml edited by hand was not: an fp16 run
    edited to bf16 went on in bf16 without a word, its GradScaler's state dropped and its
    config.toml then claiming bf16 for steps trained in fp16. Now one line, exit 2, nothing
    written; a budget edited by hand is a resume's to change, as an override would be."""
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1", "train.precision=fp16")
    run = new_run(config)
    assert train(config, run, stop_requested=stop_after(3))["status"] == "stopped"
    text = run.config.read_text()
    assert 'precision = "fp16"' in text
    run.config.write_text(text.replace('precision = "fp16"', 'precision = "bf16"'))
    RunLock(run.path).acquire().release()              # the lock file a run started by the CLI has
    before = files(run)
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "train.precision" in err and "put them back" in err and len(err.strip().splitlines()) == 1
    assert files(run) == before
    with pytest.raises(TrainingError, match=r"train\.precision changed since"):  # the library's route
        train(load_config(str(run.config)), run, resume=True)
    assert files(run) == before
    assert "max_steps = 0" in text
    run.config.write_text(text.replace("max_steps = 0", "max_steps = 5"))
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 0
    assert run.read_summary()["steps"] == 5
