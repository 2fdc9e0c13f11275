"""curves.png: a run's learning curves.

A language model's metric (perplexity, bits per character) is a function of its loss, so its
curves are drawn once, in the metric's units. Any other task's metric (accuracy, MSE, exact
match, label error rate) is not, so it gets its own panel under the loss, from the validation
records (and the final test point).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..tasks.lm_metrics import METRICS, metric_value
from .plot_style import ema, figure, finite, mark_events, save

# Plain-language axis labels; any other metric is labelled by its name.
LABELS = {"accuracy": "accuracy (%)", "exact_match": "exact match (%)", "ler": "label error rate (%)",
          "mse": "mean squared error", "nmse": "normalised MSE (MSE / target variance)"}
LOG_SCALE = ("mse", "nmse")  # errors that fall by orders of magnitude


def plot_curves(records: list[dict], metric: str, name: str, path: Path) -> Path:
    """Write curves.png for a run whose headline metric is ``metric``; return ``path``."""
    if metric in METRICS:
        return _metric_curves(records, metric, name, path)
    return _loss_and_metric_curves(records, metric, name, path)


def _loss_and_metric_curves(records: list[dict], metric: str, name: str, path: Path) -> Path:
    """curves.png for a task run: loss (train per step and smoothed, valid, test) above, the
    task's ``metric`` from the validation and test records below."""
    fig, (ax_loss, ax_metric) = figure(nrows=2)
    steps = [r for r in records if r["kind"] == "step"]
    if steps:
        x = [r["step"] for r in steps]
        losses = [finite(r.get("loss")) for r in steps]
        ax_loss.plot(x, losses, color="C0", alpha=0.25, linewidth=0.8, label="train (per step)")
        ax_loss.plot(x, ema(losses), color="C0", label="train (smoothed)")
    for split, color, style in (("valid", "C1", "-"), ("test", "C2", "none")):
        evals = [r for r in records if r["kind"] == "eval" and r.get("split") == split]
        if evals:
            ex = [r["step"] for r in evals]
            ax_loss.plot(ex, [finite(r.get("loss")) for r in evals], marker="o", color=color,
                         linestyle=style, label=split)
            ax_metric.plot(ex, [finite(r.get(metric)) for r in evals], marker="o", color=color,
                           linestyle=style, label=split)
    if _positive([finite(r.get("loss")) for r in records if r["kind"] in ("step", "eval")]):
        ax_loss.set_yscale("log")
    if metric in LOG_SCALE and _positive([finite(r.get(metric)) for r in records if r["kind"] == "eval"]):
        ax_metric.set_yscale("log")
    mark_events(ax_loss, [r for r in records if r["kind"] == "event"])
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(f"{name}: learning curves")
    ax_metric.set_ylabel(LABELS.get(metric, metric))
    ax_metric.set_xlabel("training step (optimizer updates)")
    for ax in (ax_loss, ax_metric):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


def _to_metric(loss: Any, metric: str) -> float:
    loss = finite(loss)
    return math.nan if math.isnan(loss) else finite(metric_value(loss, metric))


def _metric_curves(records: list[dict], metric: str, name: str, path: Path) -> Path:
    steps = [r for r in records if r["kind"] == "step"]
    fig, (ax,) = figure()
    if steps:
        x = [r["step"] for r in steps]
        smooth = ema([finite(r.get("loss")) for r in steps])
        ax.plot(x, [_to_metric(r.get("loss"), metric) for r in steps], color="C0", alpha=0.25,
                linewidth=0.8, label="train (per step)")
        ax.plot(x, [_to_metric(v, metric) for v in smooth], color="C0", label="train (smoothed)")
    for split, color in (("valid", "C1"), ("test", "C2")):
        for averaged, marker in ((False, "o"), (True, "s")):
            evals = [r for r in records if r["kind"] == "eval" and r.get("split") == split
                     and bool(r.get("averaged")) == averaged]
            if evals:
                ax.plot([r["step"] for r in evals], [_to_metric(r.get("loss"), metric) for r in evals],
                        marker=marker, color=color, linestyle="-" if split == "valid" else "none",
                        label=split + (" (averaged weights)" if averaged else ""))
    mark_events(ax, [r for r in records if r["kind"] == "event"])
    if metric == "ppl":
        ax.set_yscale("log")
    ax.set_ylabel("perplexity (log scale)" if metric == "ppl" else "bits per character (bits)")
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_title(f"{name}: learning curves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def _positive(values: list[float]) -> bool:
    """A log axis only when every drawn value is positive (MSE can be 0 only in theory)."""
    drawn = [v for v in values if not math.isnan(v)]
    return bool(drawn) and min(drawn) > 0
