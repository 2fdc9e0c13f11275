"""A language model's metrics from its mean cross-entropy: perplexity (word level) and bits per
character (character level)."""

from __future__ import annotations

import math
from typing import Any

METRICS = ("ppl", "bpc")


def perplexity(loss: float) -> float:
    """Perplexity ``exp(loss)`` of a mean cross-entropy ``loss`` in nats (inf on overflow)."""
    try:
        return math.exp(_as_float("loss", loss))
    except OverflowError:  # a diverged run: loss > ~709.78 nats exceeds float64
        return math.inf


def bits_per_char(loss: float) -> float:
    """Bits per character ``loss / ln 2`` of a mean cross-entropy ``loss`` in nats."""
    return _as_float("loss", loss) / math.log(2.0)


def metric_value(loss: float, metric: str) -> float:
    """Convert a cross-entropy ``loss`` in nats to ``metric``: "ppl" (word level) or "bpc" (char)."""
    if metric == "ppl":
        return perplexity(loss)
    if metric == "bpc":
        return bits_per_char(loss)
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def metric_fields(loss: float, metric: str) -> dict[str, float | None]:
    """The ``loss`` / ``ppl`` / ``bpc`` fields of a record: the run's metric filled, the other None."""
    return {"loss": loss, "ppl": metric_value(loss, "ppl") if metric == "ppl" else None,
            "bpc": metric_value(loss, "bpc") if metric == "bpc" else None}


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)  # also takes 1-element tensors and numpy scalars
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}") from None
