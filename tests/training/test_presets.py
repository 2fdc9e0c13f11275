"""Every shipped preset builds, trains a few steps, stops, resumes exactly, and its run can be
evaluated and plotted: the one loop, for every task kind, at a size that trains in a second."""

from __future__ import annotations

import math
import re

import pytest
import torch

from rnnreg.cli import main
from rnnreg.config import load_config
from rnnreg.runs.checkpoint import load_checkpoint
from rnnreg.runs.metrics import read_metrics
from rnnreg.runs.run_dir import new_run_dir
from rnnreg.training.loop import train

from lm_fixtures import write_corpus
from preset_fixtures import PRESETS, buildable, tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
VOLATILE = ("time", "tokens_per_s", "examples_per_s")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def stable(records):
    """The records of a run without wall-clock fields (the minutes an event quotes included) and
    the stop event."""
    return [{k: re.sub(r"\([0-9.]+ min\)", "(- min)", v) if k == "message" else v
             for k, v in r.items() if k not in VOLATILE} for r in records
            if not (r["kind"] == "event" and r["message"].startswith("stop requested"))]


def fresh(config):
    run = new_run_dir(config.train.out_dir, config.name)
    run.write_config(config)
    return run


@pytest.mark.parametrize("name", [n for n in PRESETS if buildable(n)])
def test_preset_trains_stops_resumes_exactly_and_evaluates(name, corpus_dir, tmp_path, capsys):
    config = load_config(name, tiny_overrides(name, tmp_path, corpus_dir))
    whole_run = fresh(config)
    whole = train(config, whole_run)
    assert whole["status"] == "finished" and whole["steps"] == 6
    assert whole["test"] is not None and math.isfinite(whole["test"])
    calls = {"n": 0}

    def stop_after_3():
        calls["n"] += 1
        return calls["n"] == 3

    part_run = fresh(config)
    assert train(config, part_run, stop_requested=stop_after_3)["status"] == "stopped"
    resumed = train(config, part_run, resume=True)
    assert (resumed["valid"], resumed["test"], resumed["steps"]) == (whole["valid"], whole["test"], whole["steps"])
    assert stable(read_metrics(part_run.metrics)) == stable(read_metrics(whole_run.metrics))
    a, b = load_checkpoint(whole_run.best)["model"], load_checkpoint(part_run.best)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert main(["eval", str(part_run.path), "--split", "valid"]) == 0
    assert capsys.readouterr().out.startswith("valid: loss")
    assert main(["plot", str(part_run.path), "--norm-steps", "20"]) == 0
    for png in ("curves.png", "lr.png", "hidden_norms.png"):
        assert (part_run.plots / png).stat().st_size > 1000, png
