"""GRU-D's input preparation: masks, time intervals (Che et al. 2018, eq. 2) and last observations."""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.layers.grud_inputs import grud_inputs, last_observed, observation_mask, time_since_observed

N = math.nan
# The two-variable example Che et al. illustrate eq. 2 with: seven observations at irregular times.
VALUES = torch.tensor([[47, 49, N, 40, N, 43, 55],
                       [N, 15, 14, N, N, N, 15]], dtype=torch.double).T  # (T=7, D=2)
TIMES = torch.tensor([0.0, 0.1, 0.6, 1.6, 2.2, 2.5, 3.1], dtype=torch.double)
MASK = torch.tensor([[1, 1, 0, 1, 0, 1, 1],
                     [0, 1, 1, 0, 0, 0, 1]], dtype=torch.double).T
# Worked by hand from eq. 2, e.g. variable 1 at t=4: missing at t=3, so 1.6 - 0.6 + 0.5 = 1.5;
# variable 2 at t=6: missing at t=4, 5, so 0.3 + (0.6 + (1.0)) = 1.9.
DELTA = torch.tensor([[0.0, 0.1, 0.5, 1.5, 0.6, 0.9, 0.6],
                      [0.0, 0.1, 0.5, 1.0, 1.6, 1.9, 2.5]], dtype=torch.double).T


def test_mask_and_intervals_of_the_paper_example():
    assert torch.equal(observation_mask(VALUES), MASK)
    torch.testing.assert_close(time_since_observed(MASK, TIMES), DELTA)


def test_unit_steps_when_no_timestamps_are_given():
    mask = torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0]])  # (T=5, D=1)
    assert time_since_observed(mask).flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 1.0]


def brute_force_delta(mask, times):
    """delta_t = s_t - s_t' for the last observation t' < t, or s_t - s_1 if there was none."""
    out = torch.zeros_like(mask)
    for t in range(mask.shape[0]):
        for index in torch.cartesian_prod(*[torch.arange(n) for n in mask.shape[1:]]):
            i = tuple(index.tolist())
            before = [u for u in range(t) if mask[(u, *i)] > 0]
            start = before[-1] if before else 0
            out[(t, *i)] = times[t, i[0]] - times[start, i[0]]
    return out


def test_intervals_agree_with_their_definition_per_series_and_batch_first():
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(9, 3, 2, generator=gen) < 0.4).double()  # (T, B, D)
    times = torch.rand(9, 3, generator=gen, dtype=torch.double).cumsum(0)  # (T, B)
    expected = brute_force_delta(mask, times)
    torch.testing.assert_close(time_since_observed(mask, times), expected)
    batch_first = time_since_observed(mask.transpose(0, 1), times.T, batch_first=True)
    torch.testing.assert_close(batch_first, expected.transpose(0, 1))


def test_last_observed_forward_fills_and_falls_back_to_the_mean():
    fallback = torch.tensor([45.0, 14.5], dtype=torch.double)
    x_last = last_observed(VALUES, MASK, fallback)
    expected = torch.tensor([[47, 49, 49, 40, 40, 43, 55],
                             [14.5, 15, 14, 14, 14, 14, 15]], dtype=torch.double).T
    torch.testing.assert_close(x_last, expected)


def test_grud_inputs_hold_no_nan_and_keep_observed_values():
    batch = torch.stack([VALUES, VALUES.flip(0)], dim=1)  # (T, B=2, D)
    out = grud_inputs(batch, None, torch.zeros(2, dtype=torch.double))
    assert all(torch.isfinite(t).all() for t in out.values())
    observed = out["mask"] > 0
    assert torch.equal(out["x"][observed], batch[observed]) and (out["x"][~observed] == 0).all()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="decrease"):
        time_since_observed(MASK, TIMES.flip(0))
    with pytest.raises(ValueError, match="times"):
        time_since_observed(MASK, TIMES[:3])
    with pytest.raises(ValueError, match="fallback"):
        last_observed(VALUES, MASK, torch.zeros(3))
    with pytest.raises(TypeError, match="floating"):
        observation_mask(torch.zeros(3, 2, dtype=torch.long))
