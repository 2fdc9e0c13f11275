"""train.precision: bf16 / fp16 autocast in the one training loop, the loss and the penalties in
float32, fp16 loss scaling whose state survives a resume bit for bit, validation in float32."""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.config import ConfigError, load_config
from rnnreg.runs.checkpoint import load_checkpoint
from rnnreg.runs.metrics import read_metrics
from rnnreg.training.loop import train
from rnnreg.training.precision import Precision

from rnnreg.runs.run_dir import new_run_dir

from lm_fixtures import run_config as _run, stop_after, tiny_config, write_corpus
from preset_fixtures import PRESETS, buildable, tiny_overrides


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_the_setting_is_validated():
    assert load_config("quickstart").train.precision == "fp32"
    with pytest.raises(ConfigError, match="train.precision"):
        load_config("quickstart", ["train.precision=fp8"])


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_low_precision_run_learns_with_float32_losses(corpus_dir, tmp_path, precision):
    """The AWD preset (AR / TAR on, weight drop, zoneout-free fused path) and a zoneout model
    (the stepwise kernel) both train; the logged loss and penalties are float32 numbers."""
    for extra in ([], ["model.zoneout_h_p=0.1", "model.zoneout_c_p=0.1"]):
        config = tiny_config(corpus_dir, tmp_path / precision / str(len(extra)), "train.threads=1",
                             "optim.optimizer=adam", "optim.lr=0.01", f"train.precision={precision}", *extra)
        run, summary = _run(config)
        steps = [r for r in read_metrics(run.metrics) if r["kind"] == "step"]
        assert summary["status"] == "finished" and all(math.isfinite(r["loss"]) for r in steps)
        assert steps[-1]["loss"] < steps[0]["loss"] - 0.5          # it learns
        assert steps[0]["penalties"]["ar"] > 0 and steps[0]["penalties"]["tar"] > 0
        ckpt = load_checkpoint(run.last)
        assert ("scale" in ckpt["precision"]) == (precision == "fp16")
        assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_every_shipped_preset_trains_in_low_precision(corpus_dir, tmp_path, precision):
    """Two steps of every preset (tests/preset_fixtures.py's tiny sizes) with train.precision set:
    every model family, regularizer and output layer under autocast. The Clockwork presets (the
    layer's loop) and awd-lstm-wt103 (the adaptive softmax) raised here before."""
    failures = {}
    for name in (n for n in PRESETS if buildable(n)):
        config = load_config(name, [*tiny_overrides(name, tmp_path / name, corpus_dir),
                                    f"train.precision={precision}", "train.max_steps=2"])
        run = new_run_dir(config.train.out_dir, config.name)
        run.write_config(config)
        try:
            summary = train(config, run)
        except RuntimeError as err:
            failures[name] = str(err)[:200]
            continue
        if summary["status"] != "finished" or not math.isfinite(summary["test"]):
            failures[name] = summary["status"]
    assert not failures, failures


@pytest.mark.slow
def test_an_fp16_run_resumes_bit_for_bit_with_its_loss_scale(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1", "train.threads=1", "train.precision=fp16")
    whole_run, whole = _run(config)
    part_run, stopped = _run(config, stop_requested=stop_after(20))
    assert stopped["status"] == "stopped"
    scale = load_checkpoint(part_run.last)["precision"]["scale"]
    resumed = train(config, part_run, resume=True)
    assert (resumed["valid"], resumed["test"]) == (whole["valid"], whole["test"])
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")}
                        for r in rs if r["kind"] != "event"]
    assert strip(read_metrics(part_run.metrics)) == strip(read_metrics(whole_run.metrics))
    assert scale > 0


@pytest.mark.slow
def test_a_bf16_run_resumes_bit_for_bit_in_a_fresh_process(corpus_dir, tmp_path):
    """A resumed run is a new process, whose first bf16 step probes oneDNN's bf16 LSTM again
    (kernels/precision.py); the probe drew from the global generator, so the resumed run's masks
    drifted from the uninterrupted run's. Each run here starts with the probe forgotten."""
    from rnnreg.kernels.precision import onednn_bf16_lstm

    config = tiny_config(corpus_dir, tmp_path, "train.epochs=1", "train.threads=1", "train.precision=bf16")
    onednn_bf16_lstm.cache_clear()
    whole_run, whole = _run(config)
    onednn_bf16_lstm.cache_clear()
    part_run, stopped = _run(config, stop_requested=stop_after(20))
    assert stopped["status"] == "stopped"
    onednn_bf16_lstm.cache_clear()
    resumed = train(config, part_run, resume=True)
    assert (resumed["valid"], resumed["test"]) == (whole["valid"], whole["test"])


def test_fp16_skips_an_overflowed_step_and_lowers_its_scale():
    """GradScaler's contract, through Precision: an inf gradient is not applied, and the scale
    halves; a rollback (abandon) leaves the scaler ready for the next step."""
    layer = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    precision = Precision("fp16", torch.device("cpu"))
    before = layer.weight.detach().clone()
    scale = precision.scaler.get_scale()
    precision.backward(layer(torch.tensor([[1e30, 1e30]])).sum() * 1e30)
    precision.unscale(opt)
    precision.step(opt)
    assert torch.equal(layer.weight, before) and precision.scaler.get_scale() == scale / 2
    opt.zero_grad()
    precision.backward(layer(torch.ones(1, 2)).sum())
    precision.unscale(opt)
    precision.abandon()
    opt.zero_grad()
    precision.backward(layer(torch.ones(1, 2)).sum())
    precision.unscale(opt)                                         # not "already unscaled"
    precision.step(opt)
    assert not torch.equal(layer.weight, before)
    assert Precision("fp32", torch.device("cpu")).state_dict() == {}


@pytest.mark.slow
def test_a_gradient_that_stays_non_finite_under_fp16_is_a_fault_not_an_overflow(corpus_dir, tmp_path, monkeypatch):
    """The scaler skips overflowed steps and halves its scale; a gradient still NaN once the
    scale is below 1 is no overflow, and the NaN policy takes over (here: stop, status failed),
    rather than a run that skips every step and "finishes" having learned nothing."""
    import rnnreg.training.loop as loop

    build = loop.build_model

    def poisoned(config, spec):
        model = build(config, spec)
        next(model.parameters()).register_hook(lambda g: torch.full_like(g, float("nan")))
        return model

    monkeypatch.setattr(loop, "build_model", poisoned)
    config = tiny_config(corpus_dir, tmp_path, "train.threads=1", "train.precision=fp16", "train.nan_policy=stop",
                         "train.max_steps=60")
    run, summary = _run(config)
    records = read_metrics(run.metrics)
    scales = [r["loss_scale"] for r in records if r["kind"] == "step"]
    assert summary["status"] == "failed"
    assert scales[0] == 65536.0 / 2 and scales[-1] < 1.0 and len(scales) < 25    # halved at every skip
    assert all(b == a / 2 for a, b in zip(scales, scales[1:]))
    assert any(r["kind"] == "event" and "non-finite" in r["message"] for r in records)
