"""PNG plots of a training run (learning curves, schedules, penalties) and of hidden-state norms.

matplotlib is imported inside the functions so ``import rnnreg`` stays light. Figures are drawn
on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``) rather than through pyplot:
that renders headless without switching the process-wide backend (which would break a caller's
interactive session) and leaves no open pyplot figures behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .curves import LABELS, plot_curves
from ..tasks.lm_metrics import METRICS
from .metrics import read_metrics
from .plot_style import figure, finite, save

if TYPE_CHECKING:
    from .trained import TrainedRun

log = logging.getLogger(__name__)


class RunPlotError(ValueError):
    """The run directory has nothing to plot (no metrics.jsonl, or no step/eval records)."""

def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except tomllib.TOMLDecodeError as err:
        log.warning("%s: unreadable config, plotting without it (%s)", path, err)
        return {}


def _run_metric(run_dir: Path, config: dict[str, Any], records: list[dict]) -> str:
    """The run's headline metric: from its summary, else what its config asked to report, else
    the first metric its records carry (a run still going has no summary yet)."""
    metric = _summary_metric(run_dir) or (config.get("expect") or {}).get("metric")
    if metric in METRICS or metric in LABELS:
        return metric
    fields = {k for r in records if r["kind"] in ("step", "eval") for k, v in r.items() if v is not None}
    return next((m for m in (*METRICS, *LABELS) if m in fields), "loss")


def _summary_metric(run_dir: Path) -> str | None:
    """The metric named in the run's summary.json, if it has one that can be read now."""
    summary = run_dir / "summary.json"
    if not summary.exists():
        return None
    try:
        return json.loads(summary.read_text(encoding="utf-8")).get("metric")
    except ValueError:  # a summary being rewritten right now
        return None


def _plot_schedule(steps: list[dict], name: str, path: Path) -> Path:
    lengths = any(r.get("seq_len") is not None for r in steps)  # sequence tasks have no BPTT window
    fig, axes = figure(nrows=2 if lengths else 1)
    ax_lr = axes[0]
    x = [r["step"] for r in steps]
    ax_lr.plot(x, [finite(r.get("lr")) for r in steps], color="C3", label="learning rate")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title(f"{name}: learning rate" + (" and BPTT length" if lengths else ""))
    if not lengths:
        ax_lr.set_xlabel("training step (optimizer updates)")
        ax_lr.grid(True, alpha=0.3)
        ax_lr.legend(fontsize=8)
        return save(fig, path)
    ax_len = axes[1]
    # Dots, not a line: AWD-LSTM style runs draw a random BPTT length for every batch.
    ax_len.plot(x, [finite(r.get("seq_len")) for r in steps], ".", color="C4", markersize=2,
                label="sequence length")
    ax_len.set_ylabel("BPTT length (time steps)")
    ax_len.set_xlabel("training step (optimizer updates)")
    for ax in (ax_lr, ax_len):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


def _penalty(record: dict, key: str) -> float:
    return finite((record.get("penalties") or {}).get(key))


def _plot_penalties(steps: list[dict], name: str, path: Path) -> Path | None:
    names = sorted({k for r in steps for k in (r.get("penalties") or {})})
    # nan != 0, so a penalty that is only ever nan/absent/zero counts as inactive.
    active = [k for k in names if any(not math.isnan(v) and v != 0.0
                                      for v in (_penalty(r, k) for r in steps))]
    if not active:
        log.info("%s: penalties.png not written: every penalty is zero or absent", path.parent)
        return None
    fig, (ax,) = figure()
    x = [r["step"] for r in steps]
    for key in active:
        ax.plot(x, [_penalty(r, key) for r in steps], label=key)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("penalty added to the loss (nats)")
    ax.set_title(f"{name}: regularization penalties")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write curves.png, lr.png and penalties.png for a run; return the paths written.

    ``out_dir`` defaults to ``run_dir/plots``. lr.png and penalties.png need step records;
    penalties.png is skipped (and the skip logged) when every penalty is zero or absent.
    Raises :class:`RunPlotError` if the run has no metrics.jsonl or no step/eval records.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise RunPlotError(f"run_dir: no metrics.jsonl in {run_dir}")
    records = [r for r in read_metrics(path) if isinstance(r.get("kind"), str)]
    steps = [r for r in records if r["kind"] == "step"]
    if not steps and not any(r["kind"] == "eval" for r in records):
        raise RunPlotError(f"run_dir: {path} has no step or eval records to plot")
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    config = _read_config(run_dir)
    name = run_dir.resolve().name
    name += f" ({config['name']})" if config.get("name") not in (None, name) else ""
    written = [plot_curves(records, _run_metric(run_dir, config, records), name, out / "curves.png")]
    if steps:
        written.append(_plot_schedule(steps, name, out / "lr.png"))
        written.append(_plot_penalties(steps, name, out / "penalties.png"))
    return [p for p in written if p is not None]


def hidden_norms(raw: list[Tensor], *, per_sequence: bool = True) -> dict[str, Tensor]:
    """Per-time-step L2 norms ``||h_t||_2`` of each layer's hidden states.

    ``raw``: one (T, B, H) tensor per layer (e.g. ``RecurrentStates.raw``). Returns
    ``{"layer 1": norms, ...}`` with norms of shape (T, B) (one value per sequence), or (T,)
    averaged over the batch when ``per_sequence=False``. Padded steps are not masked.
    """
    if isinstance(raw, Tensor) or not isinstance(raw, (list, tuple)) or not raw:
        raise TypeError("raw must be a non-empty list of (T, B, H) tensors, one per layer")
    out = {}
    for i, h in enumerate(raw, 1):
        if not isinstance(h, Tensor) or h.dim() != 3:
            raise ValueError(f"raw[{i - 1}] must be a (T, B, H) tensor, got {getattr(h, 'shape', h)}")
        norms = torch.linalg.vector_norm(h.detach().double(), dim=-1).cpu()  # (T, B, H) -> (T, B)
        out[f"layer {i}"] = norms if per_sequence else norms.mean(dim=1)  # (T, B) -> (T,)
    return out


def plot_hidden_norms(norms: dict[str, Tensor | list], path: str | os.PathLike, *,
                      title: str = "Hidden-state norm over time") -> Path:
    """Plot ``||h_t||_2`` against time step, one line per layer; return ``path``.

    In the style of Krueger & Memisevic (2016), Fig. 3, which shows how the norm-stabilizer
    keeps hidden norms flat over time. Each value is (T,) (a line) or (T, B) (the batch mean as
    a line with the 10th-90th percentile band across sequences); nan values (the padded steps of
    shorter sequences) are left out of the mean and the band.
    """
    if not isinstance(norms, dict) or not norms:
        raise ValueError("norms must be a non-empty dict of layer name -> (T,) or (T, B) norms")
    fig, (ax,) = figure()
    for i, (layer, values) in enumerate(norms.items()):
        v = torch.as_tensor(values, dtype=torch.float64).cpu()
        if v.dim() not in (1, 2) or v.shape[0] == 0:
            raise ValueError(f"norms[{layer!r}] must have shape (T,) or (T, B) with T > 0, "
                             f"got {tuple(v.shape)}")
        t = list(range(1, v.shape[0] + 1))
        mean = v if v.dim() == 1 else v.nanmean(dim=1)  # (T, B) -> (T,); nan: padded steps
        ax.plot(t, mean.tolist(), color=f"C{i}", label=str(layer))
        if v.dim() == 2 and v.shape[1] > 1:
            low, high = torch.nanquantile(v, torch.tensor([0.1, 0.9], dtype=v.dtype), dim=1)  # (2, T)
            ax.fill_between(t, low.tolist(), high.tolist(), color=f"C{i}", alpha=0.2, linewidth=0)
    ax.set_xlabel("time step t")
    ax.set_ylabel(r"hidden-state norm $\|h_t\|_2$")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, Path(path))


def plot_run_hidden_norms(trained: "TrainedRun", path: str | os.PathLike, steps: int) -> Path:
    """Per-layer ||h_t|| of a trained run over the first ``steps`` validation steps (Krueger &
    Memisevic 2016, Fig. 3); the padded steps of shorter sequences are left out of the bands."""
    raw, lengths = trained.hidden_states(steps)                 # (T, B, H_l) per layer, (B,) or None
    norms = hidden_norms(raw)                                   # (T, B) per layer
    if lengths is not None:                                     # padding is no state
        padded = torch.arange(raw[0].shape[0]).unsqueeze(1) >= lengths.cpu().unsqueeze(0)  # (T, B)
        norms = {layer: values.masked_fill(padded, float("nan")) for layer, values in norms.items()}
    return plot_hidden_norms(norms, path, title=f"{trained.config.name}: hidden-state norm per layer "
                                                f"over {raw[0].shape[0]} steps")
