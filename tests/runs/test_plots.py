"""Run plots (curves, lr, penalties) and hidden-state norm plots written as real PNG files."""

from __future__ import annotations

import json
import logging
import math
import struct
import subprocess
import sys

import pytest
import torch

from rnnreg.runs.plots import RunPlotError, hidden_norms, plot_hidden_norms, plot_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONFIG = """name = "zaremba-small"
[expect]
metric = "{metric}"
[[expect.references]]
source = "Zaremba et al. 2014, Table 1 (non-regularized)"
valid = 120.7
test = 114.5
"""


def _write_run(run_dir, *, steps=60, penalties=(0.01, 0.02), metric="ppl", losses=None):
    """A synthetic run in the trainer's formats: config.toml, metrics.jsonl, summary.json."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text(CONFIG.format(metric=metric))
    lines = []
    for s in range(1, steps + 1):
        loss = losses[s - 1] if losses else 4.6 + 2.0 * math.exp(-s / 15) + 0.05 * math.sin(s)
        value = math.exp(loss) if math.isfinite(loss) and loss < 700 else None
        lines.append({"kind": "step", "step": s, "epoch": 1 + s // 20, "lr": 30.0 if s < 40 else 15.0,
                      "seq_len": 65 + s % 7, "loss": loss if math.isfinite(loss) else "nan",
                      "ppl": value if metric == "ppl" else None,
                      "bpc": loss / math.log(2) if metric == "bpc" else None,
                      "penalties": {"ar": penalties[0], "tar": penalties[1], "norm_stabilizer": 0.0,
                                    "weight": 0.0},
                      "grad_norm": 0.9, "tokens_per_s": 5123.0, "time": 0.5 * s})
        if s % 20 == 0:
            lines.append({"kind": "eval", "step": s, "epoch": s // 20, "split": "valid",
                          "loss": 4.9, "ppl": 134.2, "bpc": None, "averaged": s > 40, "time": 0.5 * s})
            lines.append({"kind": "epoch", "epoch": s // 20, "step": s, "train_loss": 5.0,
                          "valid_loss": 4.9, "lr": 30.0, "time": 0.5 * s})
    lines.append({"kind": "event", "step": 41, "epoch": 3,
                  "message": "non-monotone trigger: switched to averaged SGD"})
    lines.append({"kind": "eval", "step": steps, "epoch": 3, "split": "test", "loss": 4.8,
                  "ppl": 121.5, "bpc": None, "averaged": True, "time": 40.0})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run_dir / "summary.json").write_text(json.dumps(
        {"name": "zaremba-small", "metric": metric, "valid": 121.3, "test": 116.0,
         "status": "finished", "epochs": 3, "steps": steps, "wall_s": 30.0, "finetuned": False}))
    return run_dir


def _assert_png(path, min_bytes=5000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > min_bytes, (path, len(data))  # axes, lines and text, not a blank canvas
    width, height = struct.unpack(">II", data[16:24])  # IHDR chunk: big-endian width, height
    assert width >= 400 and height >= 300, (path, width, height)


@pytest.mark.slow  # renders three figures
def test_plot_run_writes_three_pngs_into_run_plots(tmp_path):
    run = _write_run(tmp_path / "run")
    paths = plot_run(run)
    assert [p.name for p in paths] == ["curves.png", "lr.png", "penalties.png"]
    for p in paths:
        assert p.parent == run / "plots"
        _assert_png(p)


def test_zero_penalties_skip_their_plot_and_out_dir_is_honoured(tmp_path, caplog):
    run = _write_run(tmp_path / "run", penalties=(0.0, 0.0), metric="bpc")
    with caplog.at_level(logging.INFO, logger="rnnreg.runs.plots"):
        paths = plot_run(run, out_dir=tmp_path / "elsewhere")
    assert paths == [tmp_path / "elsewhere" / "curves.png", tmp_path / "elsewhere" / "lr.png"]
    for p in paths:
        _assert_png(p)
    assert not (tmp_path / "elsewhere" / "penalties.png").exists()
    assert not (run / "plots").exists()
    assert "penalties.png not written" in caplog.text


def test_diverged_run_with_nan_and_overflowing_losses_still_plots(tmp_path):
    # exp(1000) overflows float64 (math.exp raises); NaN losses must become gaps, not errors.
    losses = [5.0, 4.8, math.nan, 1000.0, 4.7] * 6
    run = _write_run(tmp_path / "run", steps=len(losses), losses=losses)
    for p in plot_run(run):
        _assert_png(p)


def test_run_without_metrics_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunPlotError, match="metrics.jsonl"):
        plot_run(tmp_path / "empty")
    events_only = tmp_path / "events"
    events_only.mkdir()
    (events_only / "metrics.jsonl").write_text(
        json.dumps({"kind": "event", "step": 0, "epoch": 0, "message": "started"}) + "\n")
    with pytest.raises(ValueError, match="no step or eval records"):
        plot_run(events_only)


def test_hidden_norms_match_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    raw = [torch.randn(5, 3, 4, generator=gen), torch.randn(5, 3, 2, generator=gen) * 3]
    per_seq = hidden_norms(raw)
    assert list(per_seq) == ["layer 1", "layer 2"]
    for h, norms in zip(raw, per_seq.values()):
        assert norms.shape == (5, 3)
        for t in range(5):
            for b in range(3):
                direct = math.sqrt(sum(float(v) ** 2 for v in h[t, b]))
                assert norms[t, b].item() == pytest.approx(direct)
    means = hidden_norms(raw, per_sequence=False)
    for name in per_seq:
        assert means[name].shape == (5,)
        torch.testing.assert_close(means[name], per_seq[name].mean(dim=1))


def test_hidden_norms_argument_errors():
    with pytest.raises(TypeError, match="raw"):
        hidden_norms(torch.zeros(4, 2, 3))  # a tensor, not a list of layers
    with pytest.raises(ValueError, match=r"raw\[1\]"):
        hidden_norms([torch.zeros(4, 2, 3), torch.zeros(4, 3)])


def test_plot_hidden_norms_lines_and_bands(tmp_path):
    gen = torch.Generator().manual_seed(1)
    # A growing norm (unregularized) next to a flat one, as in Krueger & Memisevic (2016), Fig. 3.
    growing = torch.randn(40, 6, 8, generator=gen) * torch.linspace(1, 4, 40).view(40, 1, 1)
    flat = torch.randn(40, 6, 8, generator=gen)
    norms = hidden_norms([growing, flat])
    norms["mean only"] = [1.0 + 0.01 * t for t in range(40)]
    out = plot_hidden_norms(norms, tmp_path / "sub" / "norms.png", title="LSTM on PTB")
    assert out == tmp_path / "sub" / "norms.png"
    _assert_png(out)


def test_padded_steps_are_left_out_of_mean_and_band(tmp_path, monkeypatch):
    """Sequences of a padded batch end at different steps; nan marks the padding."""
    import matplotlib.axes

    drawn = []
    real_plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda ax, x, y, *a, **k: (drawn.append(y), real_plot(ax, x, y, *a, **k))[1])
    norms = torch.tensor([[1.0, 3.0], [2.0, float("nan")], [4.0, float("nan")]])  # (T, B)
    _assert_png(plot_hidden_norms({"layer 1": norms}, tmp_path / "norms.png"))
    assert drawn == [[2.0, 2.0, 4.0]]


def test_smoothing_of_a_short_log_follows_the_loss():
    from rnnreg.runs.plot_style import ema

    falling = [1.0] * 10 + [0.01] * 50                 # 60 logged steps: the loss drops at record 10
    assert ema(falling)[20] < 0.05                     # a fixed 0.9 EMA would still be at ~0.35
    assert ema([1.0, float("nan"), 3.0])[1] == 1.0     # gaps are skipped, not spread


def test_plot_hidden_norms_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="norms"):
        plot_hidden_norms({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="norms\\['bad'\\]"):
        plot_hidden_norms({"bad": torch.zeros(2, 3, 4)}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow  # a fresh interpreter in a subprocess
def test_importing_rnnreg_does_not_import_matplotlib():
    code = ("import sys, rnnreg, rnnreg.runs.plots, rnnreg.runs.report, rnnreg.runs.metrics; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
