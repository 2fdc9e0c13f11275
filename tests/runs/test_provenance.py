"""Every run's summary says where its numbers come from: code, machine, data, how its config
differs from its preset, and whether a budget or a signal cut it short."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import rnnreg
from rnnreg.config import load_config
from rnnreg.runs.provenance import config_diff, git_commit, stopped_by
from rnnreg.runs.run_dir import new_run_dir
from rnnreg.training.loop import train

from lm_fixtures import TINY, tiny_config, write_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("provenance")
    corpus = write_corpus(tmp / "corpus")
    config = tiny_config(corpus, tmp / "runs", "train.max_steps=8", "train.threads=1")
    run = new_run_dir(config.train.out_dir, config.name)
    run.write_config(config)
    train(config, run)
    return json.loads(run.summary.read_text()), corpus


def test_a_trained_run_records_every_field(budget_run):
    summary, corpus = budget_run
    p = summary["provenance"]
    assert set(p) == {"rnnreg", "git_commit", "python", "torch", "device", "device_name", "threads",
                      "dataset", "data_sha256", "preset", "config_diff", "stopped_by", "epochs", "steps",
                      "preset_epochs", "full_schedule", "wall_s", "peak_memory"}
    assert p["rnnreg"] == rnnreg.__version__ and p["torch"] == torch.__version__
    assert p["device"] == "cpu" and p["device_name"] and p["threads"] == 1
    assert p["git_commit"] is None or len(p["git_commit"]) == 40
    assert p["dataset"] == summary["description"].split(":")[0]
    assert p["data_sha256"] == {str(corpus / f"{s}.txt"): hashlib.sha256((corpus / f"{s}.txt").read_bytes()).hexdigest()
                                for s in ("train", "valid", "test")}
    assert p["preset"] == "awd-lstm-ptb" and p["preset_epochs"] == load_config("awd-lstm-ptb").train.epochs
    assert (p["epochs"], p["steps"]) == (summary["epochs"], summary["steps"]) == (1, 8)
    assert p["wall_s"] == summary["wall_s"]
    assert p["peak_memory"]["max_rss_bytes"] > 0 and p["peak_memory"]["cuda_max_allocated_bytes"] is None


def test_a_budget_stopped_run_says_max_steps(budget_run):
    summary, _ = budget_run
    assert summary["status"] == "finished"
    assert summary["provenance"]["stopped_by"] == "max_steps"
    assert summary["provenance"]["full_schedule"] is False


def test_the_config_diff_names_exactly_the_overridden_keys(tmp_path):
    """data.path / cache_dir / download, the device, threads and out_dir are where and on what a
    run goes, not what it trains: they are left out."""
    preset = load_config("awd-lstm-ptb")
    config = tiny_config(tmp_path / "corpus", tmp_path / "runs", "train.threads=1", "data.cache_dir=/x",
                         "data.download=false", "train.device=cpu")
    diff = config_diff(config, preset)
    # Every tiny override changes the preset's value (awd-lstm-ptb: 3 x 1150, 500 epochs, ...).
    assert set(diff) == {o.split("=")[0] for o in TINY} | {"data.dataset", "train.epochs"}
    assert diff["model.hidden_size"] == f"{preset.model.hidden_size!r} -> 24"
    assert not {"data.path", "data.cache_dir", "data.download", "train.device", "train.threads",
                "train.out_dir"} & set(diff)
    assert config_diff(preset, load_config("awd-lstm-ptb", ["data.path=/somewhere", "train.threads=3"])) == {}


def test_stopped_by():
    config = load_config("awd-lstm-ptb", ["train.max_minutes=1"])
    assert stopped_by(config, status="stopped", steps=3, wall_s=1, budget_spent=False) == "signal"
    assert stopped_by(config, status="finished", steps=3, wall_s=61, budget_spent=False) == "max_minutes"
    assert stopped_by(config, status="finished", steps=3, wall_s=61, budget_spent=True) == "max_minutes"
    assert stopped_by(config, status="finished", steps=3, wall_s=10, budget_spent=False) is None
    assert stopped_by(config, status="failed", steps=3, wall_s=61, budget_spent=False) is None


def test_git_commit_reads_head_and_refs(tmp_path):
    sha = "a" * 40
    (tmp_path / ".git" / "refs" / "heads").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    assert git_commit(tmp_path / "src" / "pkg") == sha
    (tmp_path / ".git" / "refs" / "heads" / "main").unlink()
    (tmp_path / ".git" / "packed-refs").write_text(f"# pack-refs\n{'b' * 40} refs/heads/main\n")
    assert git_commit(tmp_path / "src" / "pkg") == "b" * 40
    (tmp_path / ".git" / "HEAD").write_text("c" * 40 + "\n")            # detached
    assert git_commit(tmp_path / "src") == "c" * 40


def test_fewer_epochs_are_the_full_schedule_only_under_the_presets_own_early_stopping(tmp_path):
    """zoneout-char-ptb allows 2000 epochs with patience 25: a run that stopped early with the
    preset's epochs ran its full schedule; one told train.epochs=8 did not (it is scaled)."""
    from rnnreg.runs.provenance import collect_provenance

    def full(*overrides):
        config = load_config("zoneout-char-ptb", list(overrides))
        return collect_provenance(config, task=None, status="finished", epochs=8, steps=100, wall_s=10.0,
                                  device=torch.device("cpu"), budget_spent=False)["full_schedule"]

    assert full() is True
    assert full("train.epochs=8") is False
