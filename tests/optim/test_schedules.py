"""Learning-rate schedules and early stopping."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from rnnreg.optim import (ConstantSchedule, EarlyStopping, PlateauSchedule, ZarembaDecay,
                          build_scheduler)
from rnnreg.optim.schedules import MilestoneDecay


def _sgd(lr: float = 1.0, groups: int = 1) -> torch.optim.SGD:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr * (i + 1)}
              for i in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def _lrs_per_epoch(schedule, opt: torch.optim.Optimizer, epochs: int) -> list[float]:
    """The learning rate each epoch (1-based) trains with."""
    lrs = []
    for epoch in range(1, epochs + 1):
        lrs.append(opt.param_groups[0]["lr"])
        schedule.epoch_end(epoch)
    return lrs


def test_zaremba_small_model() -> None:
    # Zaremba et al. (2014), small model: lr 1 for 4 epochs, then halved after each epoch.
    opt = _sgd(1.0)
    lrs = _lrs_per_epoch(ZarembaDecay(opt, factor=0.5, start_epoch=4), opt, 7)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]


@pytest.mark.parametrize("factor,start", [(1 / 1.2, 6), (1 / 1.15, 14)])
def test_zaremba_matches_tensorflow_ptb_formula(factor: float, start: int) -> None:
    # The TensorFlow PTB tutorial that reimplements Zaremba et al. sets, for 0-based epoch i,
    # lr = lr0 * lr_decay ** max(i + 1 - max_epoch, 0).
    opt = _sgd(1.0)
    lrs = _lrs_per_epoch(ZarembaDecay(opt, factor=factor, start_epoch=start), opt, start + 6)
    expected = [factor ** max(i + 1 - start, 0) for i in range(start + 6)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_zaremba_is_idempotent_and_scales_every_group() -> None:
    opt = _sgd(1.0, groups=2)
    schedule = ZarembaDecay(opt, factor=0.5, start_epoch=1)
    schedule.epoch_end(2)
    schedule.epoch_end(2)  # a repeated call (e.g. a resumed epoch) does not compound the decay
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.5]


def test_zaremba_state_round_trip() -> None:
    opt = _sgd(1.0)
    schedule = ZarembaDecay(opt, factor=0.5, start_epoch=2)
    for epoch in range(1, 4):
        schedule.epoch_end(epoch)
    fresh_opt = _sgd(1.0)
    fresh_opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"]  # restored from its own checkpoint
    fresh = ZarembaDecay(fresh_opt, factor=0.9, start_epoch=9)  # overwritten by the state
    fresh.load_state_dict(schedule.state_dict())
    schedule.epoch_end(4)
    fresh.epoch_end(4)
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.125


def test_plateau_matches_torch_reduce_on_plateau() -> None:
    losses = [5.0, 4.0, 4.1, 4.2, 3.0, 3.5, 3.6, 3.7, 3.8]
    opt, ref_opt = _sgd(1.0), _sgd(1.0)
    schedule = build_scheduler("plateau", opt, factor=0.5, start_epoch=0, patience=1)
    assert isinstance(schedule, PlateauSchedule)
    ref = ReduceLROnPlateau(ref_opt, mode="min", factor=0.5, patience=1)
    for epoch, v in enumerate(losses, start=1):
        schedule.epoch_end(epoch, v)
        ref.step(v)
        assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] < 1.0  # the plateaus above really reduced it
    with pytest.raises(ValueError, match="^val_loss "):
        schedule.epoch_end(10)


def test_plateau_state_round_trip() -> None:
    opt = _sgd(1.0)
    schedule = build_scheduler("plateau", opt, factor=0.5, start_epoch=0, patience=2)
    for epoch, v in enumerate([3.0, 3.1, 3.2], start=1):
        schedule.epoch_end(epoch, v)
    fresh = build_scheduler("plateau", _sgd(1.0), factor=0.5, start_epoch=0, patience=2)
    fresh.load_state_dict(schedule.state_dict())
    assert fresh.scheduler.num_bad_epochs == schedule.scheduler.num_bad_epochs == 2


def test_build_scheduler_kinds() -> None:
    opt = _sgd(1.0)
    none = build_scheduler("none", opt, factor=0.5, start_epoch=0, patience=0)
    assert isinstance(none, ConstantSchedule)
    none.epoch_end(5, 1.0)
    assert opt.param_groups[0]["lr"] == 1.0
    zaremba = build_scheduler("zaremba", opt, factor=0.5, start_epoch=0, patience=0)
    zaremba.epoch_end(1, 2.0)
    assert opt.param_groups[0]["lr"] == 0.25  # after epoch 1 with start 0: two decays
    with pytest.raises(ValueError, match="^kind .*'none'.*'zaremba'.*'plateau'"):
        build_scheduler("cosine", opt, factor=0.5, start_epoch=0, patience=0)


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"factor": 0.0, "start_epoch": 1}, ValueError, "factor"),
    ({"factor": 1.5, "start_epoch": 1}, ValueError, "factor"),
    ({"factor": 0.5, "start_epoch": -1}, ValueError, "start_epoch"),
    ({"factor": 0.5, "start_epoch": 1.0}, TypeError, "start_epoch"),
])
def test_zaremba_validation(kwargs: dict, exc: type, name: str) -> None:
    with pytest.raises(exc, match=f"^{name} "):
        ZarembaDecay(_sgd(), **kwargs)
    with pytest.raises(ValueError, match="^epoch "):
        ZarembaDecay(_sgd(), factor=0.5, start_epoch=1).epoch_end(0)


def test_early_stopping() -> None:
    stopper = EarlyStopping(patience=2)
    decisions = [stopper.update(v) for v in [5.0, 4.0, 4.0, 3.0, 3.5, 3.2]]
    # 4.0 again is no improvement (1 bad); 3.0 resets; 3.5 and 3.2 are bad epochs 1 and 2.
    assert decisions == [False, False, False, False, False, True]
    assert (stopper.best, stopper.bad_epochs) == (3.0, 2)


def test_early_stopping_min_delta_and_nan() -> None:
    stopper = EarlyStopping(patience=3, min_delta=0.1)
    for v in [5.0, 4.95, float("nan")]:
        stopper.update(v)
    # 4.95 is within min_delta of 5.0, and NaN never improves.
    assert (stopper.best, stopper.bad_epochs) == (5.0, 2)
    assert stopper.update(4.85) is False and stopper.best == 4.85


def test_early_stopping_state_round_trip_and_validation() -> None:
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    stopper.update(2.0)
    stopper.update(2.5)
    fresh = EarlyStopping(patience=9)
    fresh.load_state_dict(stopper.state_dict())
    assert fresh.update(2.6) is True and stopper.update(2.6) is True
    assert math.isinf(EarlyStopping(patience=1).best)
    with pytest.raises(ValueError, match="^patience "):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="^min_delta "):
        EarlyStopping(patience=1, min_delta=-0.1)


def test_milestones_divide_after_each_listed_epoch_like_awd_when() -> None:
    # awd-lstm-lm: `if epoch in args.when: lr /= 10` at the end of epoch `epoch`
    opt = _sgd(1e-3)
    schedule = build_scheduler("milestones", opt, factor=0.1, start_epoch=0, patience=0, milestones=(2, 4))
    lrs = []
    for epoch in range(1, 6):
        schedule.epoch_end(epoch)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    schedule.epoch_end(4)  # a repeated (resumed) epoch does not compound
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    again = MilestoneDecay(_sgd(5.0), factor=0.5, milestones=(1,))
    again.load_state_dict(schedule.state_dict())
    assert again.milestones == (2, 4) and again.base_lrs == [1e-3]


@pytest.mark.parametrize("milestones", [(3, 2), (0,), (2, 2)])
def test_milestones_must_be_increasing_epochs(milestones) -> None:
    with pytest.raises(ValueError, match="milestone"):
        MilestoneDecay(_sgd(1.0), factor=0.1, milestones=milestones)
