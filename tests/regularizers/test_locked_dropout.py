"""Locked (variational) dropout (regularizers/locked_dropout.py): one mask per sequence, reused at
every time step (Gal & Ghahramani 2016, sec. 3)."""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.regularizers import LockedDropout, locked_dropout

BAD_PROBS = [-0.1, 1.0, math.nan, "0.5"]


def test_locked_mask_constant_over_time_and_varies_over_batch_and_features() -> None:
    torch.manual_seed(0)
    p = 0.5
    out = locked_dropout(torch.ones(7, 16, 32), p, training=True)
    assert torch.equal(out, out[:1].expand_as(out))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # scale 1/(1-p)
    assert not torch.equal(out[0, 0], out[0, 1])  # batch entries get their own masks
    assert not torch.equal(out[0, :, 0], out[0, :, 1])  # features too


def test_locked_batch_first_and_trailing_dims() -> None:
    torch.manual_seed(1)
    x = torch.ones(4, 6, 3, 5, dtype=torch.float64)
    out = locked_dropout(x, 0.25, training=True, batch_first=True)
    assert torch.equal(out, out[:, :1].expand_as(out))  # constant along dim 1 (time)
    assert not torch.equal(out[0], out[1])
    assert set(out.unique().tolist()) <= {0.0, 1 / 0.75}
    tm = locked_dropout(torch.ones(5, 4, 3, 2), 0.5, training=True)
    assert torch.equal(tm, tm[:1].expand_as(tm))


def test_locked_scale_preserves_expectation() -> None:
    torch.manual_seed(2)
    out = locked_dropout(torch.ones(1, 200, 500), 0.3, training=True)
    assert out.mean().item() == pytest.approx(1.0, abs=0.02)
    assert (out == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)


def test_locked_identity_at_zero_and_in_eval_active_with_mc() -> None:
    x = torch.randn(5, 3, 4)
    assert locked_dropout(x, 0.0, training=True) is x
    m = LockedDropout(0.5)
    m.eval()
    assert m(x) is x
    assert LockedDropout(0.0)(x) is x
    torch.manual_seed(3)
    m.mc_dropout = True
    assert not torch.equal(m(x), x)
    assert "p=0.5" in repr(m) and "mc_dropout=True" in repr(m)


def test_locked_training_mode_samples() -> None:
    torch.manual_seed(4)
    m = LockedDropout(0.5).train()
    x = torch.ones(3, 8, 8)
    assert not torch.equal(m(x), x)
    assert not torch.equal(m(x), m(x))


@pytest.mark.parametrize("bad", BAD_PROBS)
def test_bad_probabilities_rejected(bad: object) -> None:
    w = torch.ones(3, 3)
    for make in (lambda: LockedDropout(bad), lambda: locked_dropout(w, bad, True)):
        with pytest.raises((ValueError, TypeError), match=r"^p must"):
            make()
