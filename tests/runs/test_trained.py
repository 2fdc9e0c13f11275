"""A trained run back from disk: rebuilt from its config and spec without its data, scored as
the run scored it, refused on data it was not trained on, and rnnreg 0.1 checkpoints still load."""

from __future__ import annotations

import hashlib
import io
import struct

import pytest
import torch

from rnnreg.config import config_to_dict
from rnnreg.data import DataError
from rnnreg.runs.checkpoint import load_checkpoint, save_checkpoint
from rnnreg.runs.run_dir import new_run_dir
from rnnreg.runs.trained import DataMismatch, load_trained
from rnnreg.training.loop import TrainingError, train

from lm_fixtures import tiny_config, write_corpus
from task_fixtures import trained_adding_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    config = tiny_config(write_corpus(tmp / "corpus"), tmp / "runs", "train.max_steps=8", "train.threads=1")
    run = new_run_dir(config.train.out_dir, config.name)
    run.write_config(config)
    return run, train(config, run), tmp


def test_the_test_score_is_the_one_the_run_recorded(lm_run):
    run, summary, _ = lm_run
    metric, scores = load_trained(run).evaluate("test")
    assert metric == "ppl" and scores["ppl"] == pytest.approx(summary["test"], rel=1e-5)


def test_sampling_needs_no_data(lm_run, tmp_path):
    run, _, tmp = lm_run
    for path in (tmp / "corpus").iterdir():
        path.rename(tmp_path / path.name)                       # the corpus is gone
    try:
        text = load_trained(run).sample(length=12, seed=0)
        with pytest.raises(DataError):
            load_trained(run).evaluate("valid")
    finally:
        for path in tmp_path.iterdir():
            path.rename(tmp / "corpus" / path.name)
    vocab = set(load_checkpoint(run.best)["spec"]["vocab"])
    assert text.split() and set(text.split()) <= vocab


def test_other_data_is_refused(lm_run, tmp_path):
    run, _, _ = lm_run
    other = write_corpus(tmp_path / "other", seed=1)
    (other / "train.txt").write_text("completely new words here\n" * 50)
    with pytest.raises(DataMismatch, match="vocabulary"):
        load_trained(run, overrides=(f"data.dataset={other}",)).evaluate("valid")


def test_a_task_model_does_not_generate_text(tmp_path):
    run = trained_adding_run(tmp_path)
    metric, scores = load_trained(run).evaluate("valid")
    assert metric == "mse" and scores["mse"] >= 0
    with pytest.raises(DataMismatch, match="does not generate text"):
        load_trained(run).sample(length=3)


def test_a_checkpoint_of_rnnreg_0_1_loads_and_refuses_to_resume(lm_run, tmp_path):
    run, summary, _ = lm_run
    best = load_checkpoint(run.best)
    spec = best.pop("spec")
    legacy = {**best, "format": "rnnreg-lm-weights", "vocab": spec["vocab"], "level": spec["level"],
              "dataset": spec["dataset"]}
    old = new_run_dir(tmp_path, "old")
    old.config.write_text(run.config.read_text())
    save_checkpoint(old.best, legacy)
    _, scores = load_trained(old).evaluate("test")
    assert scores["ppl"] == pytest.approx(summary["test"], rel=1e-5)
    save_checkpoint(old.last, {**load_checkpoint(run.last), "format": "rnnreg-lm"})
    with pytest.raises(TrainingError, match="older rnnreg"):
        train(load_trained(old).config, old, resume=True)
    assert config_to_dict(load_trained(old).config)["name"] == summary["name"]


def test_a_run_whose_checkpoints_have_the_format_1_header_still_loads(lm_run, tmp_path):
    # rnnreg 0.1 framed best.pt with a 52-byte header (magic, version 1, length, SHA-256).

    run, summary, _ = lm_run
    buffer = io.BytesIO()
    torch.save(load_checkpoint(run.best), buffer)
    body = buffer.getvalue()
    digest = hashlib.sha256(struct.pack("<IQ", 1, len(body)) + body).digest()
    old = new_run_dir(tmp_path, "old")
    old.config.write_text(run.config.read_text())
    old.best.write_bytes(struct.pack("<8sIQ32s", b"RNNRGCK\x00", 1, len(body), digest) + body)
    _, scores = load_trained(old).evaluate("test")
    assert scores["ppl"] == pytest.approx(summary["test"], rel=1e-5)
