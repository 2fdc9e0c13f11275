"""``rnnreg.train(config, "runs/x")``: the Python entry point takes paths, as the CLI does."""

from __future__ import annotations

import json

import pytest

import rnnreg
from rnnreg.config import ConfigError, load_config

TINY = ("task.seq_len=8", "task.train_size=64", "task.valid_size=32", "task.test_size=32",
        "data.batch_size=16", "data.eval_batch_size=32", "model.hidden_size=4", "train.epochs=1",
        "train.max_minutes=0", "train.eval_every=0", "train.log_every=1")


def test_a_preset_name_and_a_new_path(tmp_path):
    run = tmp_path / "runs" / "x"                     # parents are created too
    summary = rnnreg.train("adding-quick", run, overrides=TINY)
    assert summary["status"] == "finished" and summary["steps"] == 4
    assert (run / "config.toml").is_file() and (run / "best.pt").is_file()
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    assert "seq_len = 8" in (run / "config.toml").read_text()


def test_a_config_object_and_a_string_path(tmp_path):
    config = load_config("adding-quick", TINY)
    summary = rnnreg.train(config, str(tmp_path / "y"), overrides=["train.max_steps=2"])
    assert summary["steps"] == 2
    assert "max_steps = 2" in (tmp_path / "y" / "config.toml").read_text()


def test_a_toml_file(tmp_path):
    source = tmp_path / "mine.toml"
    source.write_text('base = "adding-quick"\n[model]\nhidden_size = 3\n')
    rnnreg.train(source, tmp_path / "z", overrides=TINY[:-5] + ("train.max_steps=1",))
    assert "hidden_size = 3" in (tmp_path / "z" / "config.toml").read_text()


def test_an_existing_run_is_never_overwritten(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.toml").write_text("name = 'old'\n")
    with pytest.raises(ConfigError, match="holds a run.*--resume"):
        rnnreg.train("adding-quick", tmp_path / "old", overrides=TINY)
    assert (tmp_path / "old" / "config.toml").read_text() == "name = 'old'\n"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        rnnreg.train("adding-quick", tmp_path / "file", overrides=TINY)


def test_bad_input_writes_nothing(tmp_path):
    with pytest.raises(ConfigError):
        rnnreg.train("adding-quick", tmp_path / "new", overrides=["model.hiden_size=3"])
    with pytest.raises(TypeError):
        rnnreg.train(42, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_config_this_machine_cannot_run_leaves_nothing(tmp_path, monkeypatch):
    from rnnreg.training.preflight import PreflightError

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(PreflightError, match="no CUDA GPU"):
        rnnreg.train("adding-quick", tmp_path / "a" / "b", overrides=[*TINY, "train.device=cuda"])
    assert list(tmp_path.iterdir()) == []
