"""Surprisal-driven zoneout (regularizers/surprisal_zoneout.py; Rocki 2016): surprisal in nats and
the keep probabilities made from it. How a layer uses the keep probabilities (``zoneout_keep``) is
in tests/layers/test_regularized_layers.py."""

from __future__ import annotations


import pytest
import torch

from rnnreg.regularizers import surprisal, surprisal_keep


def test_surprisal_driven_zoneout_keeps_units_when_unsurprised() -> None:
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0]])  # confident-right, uncertain
    s = surprisal(logits, torch.tensor([0, 1]))
    torch.testing.assert_close(s[1], torch.log(torch.tensor(2.0)))
    keep = surprisal_keep(s)
    assert keep.shape == (2, 1) and keep[0] > 0.99 and 0.49 < keep[1] < 0.51
    per_unit = surprisal_keep(s, torch.tensor([1.0, 100.0]))
    assert per_unit.shape == (2, 2) and per_unit[1, 1] > per_unit[1, 0]
    # Zero surprisal keeps everything: exactly 1, which freezes a layer's state
    # (test_regularized_layers.py::test_zoneout_keep_one_freezes_state_and_passes_gradient).
    assert torch.equal(surprisal_keep(torch.zeros(3, 2)), torch.ones(3, 2, 1))
    with pytest.raises(ValueError, match="temperature"):
        surprisal_keep(s, 0.0)
