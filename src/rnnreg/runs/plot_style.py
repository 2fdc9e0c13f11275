"""Drawing helpers shared by the run plots: headless figures, gaps for missing values, smoothing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SMOOTHING = 0.9  # the most EMA weight for the train curve; step losses of one batch are noisy



def figure(nrows: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.5 if nrows == 1 else 3.0 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, axes


def save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def finite(x: Any) -> float:
    # None or non-finite (a NaN-recovered step, an overflowed perplexity) -> nan: drawn as a gap.
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else math.nan


def ema(values: list[float]) -> list[float]:
    # Bias-corrected exponential moving average that skips gaps (nan) instead of spreading them.
    # Its window is at most a 30th of the records (and 10 records), so a short log is not
    # smoothed into a curve that lags the falling loss by a large part of the run.
    smoothing = min(SMOOTHING, 1.0 - 30.0 / max(len(values), 30))
    out, avg, weight = [], 0.0, 0.0
    for v in values:
        if not math.isnan(v):
            avg = smoothing * avg + (1 - smoothing) * v
            weight = smoothing * weight + (1 - smoothing)
        out.append(avg / weight if weight else math.nan)
    return out


def mark_events(ax: Any, events: list[dict]) -> None:
    events = [e for e in events if isinstance(e.get("step"), (int, float))]
    for i, event in enumerate(events):
        ax.axvline(event["step"], color="0.4", linestyle="--", linewidth=0.8,
                   label="event" if i == 0 else None)
        ax.annotate(str(event.get("message", ""))[:48], (event["step"], 1.0),
                    xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=7, color="0.3")
