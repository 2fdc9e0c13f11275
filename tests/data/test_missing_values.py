"""Irregular series and their empirical statistics (Che et al. 2018's x~^d)."""

from __future__ import annotations

import math

import torch

from rnnreg.data.missing_values import IrregularSeries, empirical_mean, empirical_std

N = math.nan
# Che et al.'s two-variable example of eq. 2 (see tests/layers/test_grud_inputs.py).
VALUES = torch.tensor([[47, 49, N, 40, N, 43, 55],
                       [N, 15, 14, N, N, N, 15]], dtype=torch.double).T  # (T=7, D=2)


def test_empirical_mean_and_std_use_only_observed_values():
    mean = empirical_mean(VALUES)
    torch.testing.assert_close(mean, torch.tensor([(47 + 49 + 40 + 43 + 55) / 5, (15 + 14 + 15) / 3],
                                                  dtype=torch.double))
    std = empirical_std(VALUES, mean)
    torch.testing.assert_close(std[1], torch.tensor([15.0, 14.0, 15.0], dtype=torch.double).std())
    never = torch.full((4, 2, 3), N)
    never[:, :, 0] = 2.0
    assert empirical_mean(never).tolist() == [2.0, 0.0, 0.0]
    assert empirical_std(never, empirical_mean(never)).tolist() == [1.0, 1.0, 1.0]  # no spread: 1


def test_subset_picks_series_and_trims_padding():
    values = torch.full((5, 3, 2), N)  # (T, N, D)
    series = IrregularSeries(values, torch.zeros(5, 3), torch.tensor([5, 2, 3]), torch.tensor([0, 1, 0]),
                             ("a", "b", "c"), ("u", "v"))
    part = series.subset(torch.tensor([2, 1]))
    assert part.values.shape == (3, 2, 2) and part.ids == ("c", "b") and part.labels.tolist() == [0, 1]
    assert len(part) == 2
