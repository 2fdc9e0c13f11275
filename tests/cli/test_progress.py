"""The progress bar's estimate of the time an epoch takes, printed once near the start."""

from __future__ import annotations

import pytest

from rnnreg.cli.progress import ProgressBar


def _bar(times: list[float], epoch_size: int = 1000) -> ProgressBar:
    bar = ProgressBar(enabled=True)
    clock = iter(times)
    bar.clock = lambda: next(clock)
    bar.on_start({"run": "runs/x", "params": 1234, "task": "a task", "epoch_size": epoch_size, "unit": "tokens",
                  "device": "cpu", "world_size": 1, "metric": "bpc", "resumed_at_step": 0})
    bar.on_epoch_start(1, "train", epoch_size, 0)
    return bar


def _estimates(text: str) -> list[str]:
    return [line for line in text.splitlines() if "per epoch" in line]


def test_the_estimate_comes_from_the_steps_after_the_first(capsys):
    # The first step took 100 s (warm-up); then 10 steps of 2 rows in 2 s each.
    bar = _bar([100.0] + [100.0 + 2 * i for i in range(1, 11)] + [200.0] * 5)
    for step in range(1, 16):
        bar.on_step(step, 2 * step, 2.5, 1000.0)
    bar.on_end({})
    # 1000 rows at 2 rows per 2 s: 1000 s.
    assert _estimates(capsys.readouterr().out) == ["about 16.7 min per epoch at this speed"]


def test_a_slow_model_gets_its_estimate_after_the_time_limit(capsys):
    bar = _bar([0.0, 15.0, 30.0, 45.0], epoch_size=100)
    for step in range(1, 5):
        bar.on_step(step, step, 2.5, 1.0)
    bar.on_end({})
    # Two steps after the first, 30 s for one row each: 100 rows take 25 min.
    assert _estimates(capsys.readouterr().out) == ["about 25.0 min per epoch at this speed"]


@pytest.mark.parametrize("seconds, shown", [(45, "45 s"), (3 * 3600, "3.0 h")])
def test_units_a_person_reads(capsys, seconds, shown):
    bar = _bar([0.0] + [seconds / 100 * i for i in range(1, 11)], epoch_size=100)
    for step in range(1, 12):
        bar.on_step(step, step, 2.5, 1.0)
    assert _estimates(capsys.readouterr().out) == [f"about {shown} per epoch at this speed"]


def test_quiet_prints_no_estimate(capsys):
    bar = _bar([float(i) for i in range(20)])
    bar.enabled = False
    for step in range(1, 15):
        bar.on_step(step, step, 2.5, 1.0)
    assert _estimates(capsys.readouterr().out) == []
