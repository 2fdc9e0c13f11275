"""Per-step noise (regularizers/step_noise.py): zoneout weights (Krueger et al. 2016), the Gal mask
(one per sequence) and the Semeniuta mask (fresh each step), in training and at eval.

Statistical bounds are ~5 standard deviations; every draw is seeded, so the tests are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.regularizers.masks import dropout_mask, keep_mask
from rnnreg.regularizers.step_noise import StepNoise, draw_step_noise, freeze_padded, zoneout_weights

T, B, H = 20, 30, 40
SHAPE = (T, B, H)
DTYPES = [torch.float32, torch.float64]


def like(dtype=torch.float64) -> torch.Tensor:
    return torch.zeros(1, dtype=dtype)


def check_rate(mask: torch.Tensor, p_keep: float) -> None:
    n = mask.numel()
    kept = float((mask != 0).double().mean())
    assert abs(kept - p_keep) <= 5.0 * math.sqrt(p_keep * (1.0 - p_keep) / n), (kept, p_keep)


def fields(noise: StepNoise) -> tuple:
    return noise.rec, noise.update, noise.keep_h, noise.keep_c


def padded_valid() -> torch.Tensor:
    lengths = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(0))
    lengths[0] = T
    return torch.arange(T)[:, None] < lengths[None, :]  # (T, B)


# ------------------------------------------------------------------------------------------------
# Eval: the identity, and zoneout's expectation


def test_everything_off_is_no_noise_at_all():
    for stochastic in (True, False):
        noise = draw_step_noise(SHAPE, like(), stochastic=stochastic, zoneout_c=0.0)
        assert fields(noise) == (None, None, None, None)


@pytest.mark.parametrize("semeniuta", [False, True])
def test_eval_drops_nothing_and_zoneout_takes_its_rate(semeniuta):
    noise = draw_step_noise(SHAPE, like(), stochastic=False, recurrent_dropout=0.5, semeniuta=semeniuta,
                            zoneout_h=0.3, zoneout_c=0.1)
    assert noise.rec is None and noise.update is None
    assert noise.keep_h.shape == SHAPE and bool((noise.keep_h == 0.3).all())
    assert noise.keep_c.shape == SHAPE and bool((noise.keep_c == 0.1).all())


def test_eval_draws_no_random_numbers():
    torch.manual_seed(0)
    draw_step_noise(SHAPE, like(), stochastic=False, recurrent_dropout=0.5, zoneout_h=0.3, zoneout_c=0.1)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


# ------------------------------------------------------------------------------------------------
# Training: rates, shapes, scaling


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_rates_shapes_and_scale(dtype):
    torch.manual_seed(0)
    noise = draw_step_noise(SHAPE, like(dtype), stochastic=True, recurrent_dropout=0.4, zoneout_h=0.3,
                            zoneout_c=0.1)
    assert noise.update is None and noise.rec.shape == (B, H)
    assert all(t.dtype == dtype for t in (noise.rec, noise.keep_h, noise.keep_c))
    scale = torch.ones((), dtype=dtype).div_(0.6)
    assert bool(((noise.rec == 0) | (noise.rec == scale)).all())
    check_rate(noise.rec, 0.6)
    for keep, rate in ((noise.keep_h, 0.3), (noise.keep_c, 0.1)):
        assert keep.shape == SHAPE and set(keep.unique().tolist()) <= {0.0, 1.0}
        check_rate(keep, rate)
    assert not torch.equal(noise.keep_h, noise.keep_c)  # independent draws for h and c


def test_a_cell_without_cell_state_gets_no_keep_c():
    noise = draw_step_noise(SHAPE, like(), stochastic=True, zoneout_h=0.3, valid=padded_valid())
    assert noise.keep_c is None and noise.keep_h is not None


def test_gal_mask_is_one_per_sequence_and_never_follows_time():
    torch.manual_seed(1)
    noise = draw_step_noise(SHAPE, like(), stochastic=True, recurrent_dropout=0.5)
    assert noise.rec.shape == (B, H) and noise.update is None  # no time axis: the same at every step
    assert not torch.equal(noise.rec[0], noise.rec[1])  # but not shared across sequences
    reversed_ = noise.map_steps(lambda t: t.flip(0))
    assert reversed_.rec is noise.rec


def test_semeniuta_mask_is_fresh_every_step():
    torch.manual_seed(2)
    noise = draw_step_noise(SHAPE, like(), stochastic=True, recurrent_dropout=0.5, semeniuta=True)
    assert noise.rec is None and noise.update.shape == SHAPE
    check_rate(noise.update, 0.5)
    assert all(not torch.equal(noise.update[t], noise.update[t + 1]) for t in range(T - 1))


# ------------------------------------------------------------------------------------------------
# Padding and the outside keep signal


@pytest.mark.parametrize("stochastic", [True, False])
@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_padded_steps_keep_everything(stochastic, rate):
    torch.manual_seed(3)
    valid = padded_valid()
    signal = torch.rand(T, B, 1, dtype=torch.double)
    for noise in (draw_step_noise(SHAPE, like(), stochastic=stochastic, zoneout_h=rate, zoneout_c=rate, valid=valid),
                  draw_step_noise(SHAPE, like(), stochastic=stochastic, keep_signal=signal, zoneout_c=0.0,
                                  valid=valid)):
        for keep in (noise.keep_h, noise.keep_c):
            assert keep.shape == SHAPE
            assert bool((keep[~valid] == 1).all())
    plain = draw_step_noise(SHAPE, like(), stochastic=stochastic, valid=valid)
    assert torch.equal(plain.keep_h, (~valid)[:, :, None].double().expand(SHAPE))  # 0 = no zoneout


def test_freezing_given_weights_and_no_padding():
    keep = torch.full(SHAPE, 0.25, dtype=torch.double)
    assert freeze_padded(keep, None, SHAPE, like()) is keep
    assert freeze_padded(None, None, SHAPE, like()) is None
    valid = padded_valid()
    frozen = freeze_padded(keep, valid, SHAPE, like())
    assert bool((frozen[valid] == 0.25).all()) and bool((frozen[~valid] == 1).all())


def test_outside_signal_is_sampled_in_training_and_used_as_is_at_eval():
    signal = torch.rand(T, B, 1, dtype=torch.double)
    signal[0], signal[1], signal[2] = 0.0, 1.0, 0.3
    torch.manual_seed(4)
    trained = zoneout_weights(0.9, SHAPE, like(), stochastic=True, signal=signal)  # the rate is ignored
    assert set(trained.unique().tolist()) <= {0.0, 1.0}
    assert bool((trained[0] == 0).all()) and bool((trained[1] == 1).all())
    check_rate(trained[2], 0.3)
    evaluated = zoneout_weights(0.9, SHAPE, like(), stochastic=False, signal=signal)
    assert torch.equal(evaluated, signal.expand(SHAPE))
    per_unit = torch.rand(T, B, H)  # a float32 signal takes like's dtype
    assert torch.equal(zoneout_weights(0.0, SHAPE, like(), stochastic=False, signal=per_unit), per_unit.double())


# ------------------------------------------------------------------------------------------------
# Reproducibility and random-number order


def test_same_seed_same_masks_other_seed_other_masks():
    def draw(seed, semeniuta=False):
        torch.manual_seed(seed)
        return draw_step_noise(SHAPE, like(), stochastic=True, recurrent_dropout=0.4, semeniuta=semeniuta,
                               zoneout_h=0.3, zoneout_c=0.2)

    for semeniuta in (False, True):
        a, b, c = draw(5, semeniuta), draw(5, semeniuta), draw(6, semeniuta)
        pairs = [(u, v) for u, v in zip(fields(a), fields(b)) if u is not None]
        assert len(pairs) == 3 and all(torch.equal(u, v) for u, v in pairs)
        assert not any(torch.equal(u, w) for u, w in zip(fields(a), fields(c)) if u is not None)


def test_draws_keep_h_then_keep_c_then_the_dropout_mask():
    torch.manual_seed(7)
    noise = draw_step_noise(SHAPE, like(), stochastic=True, recurrent_dropout=0.4, zoneout_h=0.3, zoneout_c=0.2)
    torch.manual_seed(7)
    keep_h, keep_c = keep_mask(SHAPE, 0.3, like()), keep_mask(SHAPE, 0.2, like())
    assert torch.equal(noise.keep_h, keep_h) and torch.equal(noise.keep_c, keep_c)
    assert torch.equal(noise.rec, dropout_mask((B, H), 0.4, like()))


def test_map_steps_maps_every_per_step_tensor():
    torch.manual_seed(8)
    noise = draw_step_noise(SHAPE, like(), stochastic=True, recurrent_dropout=0.4, semeniuta=True,
                            zoneout_h=0.3, zoneout_c=0.2)
    flipped = noise.map_steps(lambda t: t.flip(0))
    for before, after in ((noise.update, flipped.update), (noise.keep_h, flipped.keep_h),
                          (noise.keep_c, flipped.keep_c)):
        assert torch.equal(after, before.flip(0))
    assert flipped.rec is None


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="zoneout"):
        draw_step_noise(SHAPE, like(), stochastic=True, zoneout_h=1.0)
    with pytest.raises(ValueError, match="recurrent_dropout"):
        draw_step_noise(SHAPE, like(), stochastic=True, recurrent_dropout=-0.1)
    with pytest.raises(TypeError):
        draw_step_noise(SHAPE, like(), stochastic=True, zoneout_c=True)
