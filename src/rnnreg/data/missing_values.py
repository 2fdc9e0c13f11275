"""Irregularly sampled series with missing values, and the statistics taken over them.

Che et al. (2018), "Recurrent neural networks for multivariate time series with missing values",
Sci. Rep. 8:6085: N series of D variables observed at irregular timestamps, NaN where a variable
was not measured. Here: the container (:class:`IrregularSeries`, time-major like everything inside
rnnreg) and the training-set statistics a task standardizes with and GRU-D falls back to (their
empirical mean x~^d). What GRU-D reads per step (mask, time since the last observation, last
observed value) is the layer's input preparation: :mod:`rnnreg.layers.grud_inputs`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IrregularSeries:
    """N labelled series padded to a common length T (time-major, like everything inside rnnreg).

    values (T, N, D): NaN where missing and on padded steps. times (T, N): timestamps, strictly
    increasing within each series; padded steps repeat the last timestamp. lengths (N,): valid
    steps per series. labels (N,): integer classes. ids, feature_names: for messages and reports.
    """
    values: Tensor
    times: Tensor
    lengths: Tensor
    labels: Tensor
    ids: tuple[str, ...]
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.lengths.numel())

    def subset(self, index: Tensor) -> IrregularSeries:
        """The series at ``index`` (a 1-D long tensor), in that order, trimmed to their longest."""
        lengths = self.lengths[index]
        steps = int(lengths.max()) if lengths.numel() else 0
        return IrregularSeries(self.values[:steps, index], self.times[:steps, index], lengths,
                               self.labels[index], tuple(self.ids[i] for i in index.tolist()),
                               self.feature_names)


def empirical_mean(values: Tensor) -> Tensor:
    """(D,): each variable's mean over its observed (non-NaN) values, every step and series
    together (Che et al.'s x~^d, taken on training data). A never-observed variable gets 0."""
    flat = values.reshape(-1, values.shape[-1])  # (T * N, D)
    observed = ~torch.isnan(flat)
    counts = observed.sum(0)
    if (counts == 0).any():
        log.warning("variables %s are never observed; their empirical mean is set to 0",
                    torch.nonzero(counts == 0).flatten().tolist())
    total = torch.where(observed, flat, torch.zeros_like(flat)).sum(0)
    return total / counts.clamp(min=1)


def empirical_std(values: Tensor, mean: Tensor) -> Tensor:
    """(D,): each variable's standard deviation over its observed values around ``mean``; 1 where
    fewer than two values or no spread, so standardizing never divides by zero."""
    flat = values.reshape(-1, values.shape[-1])  # (T * N, D)
    observed = ~torch.isnan(flat)
    counts = observed.sum(0)
    squares = torch.where(observed, (flat - mean) ** 2, torch.zeros_like(flat)).sum(0)
    std = (squares / (counts - 1).clamp(min=1)).sqrt()
    return torch.where((counts > 1) & (std > 0), std, torch.ones_like(std))
