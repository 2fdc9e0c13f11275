"""The fixed-set task contract: pure-function batches, and under torchrun each rank's share of a
step is exactly its half of the single-process batch."""

from __future__ import annotations

import pytest
import torch

from rnnreg.tasks.adding import AddingTask


def started(world=1, rank=0, batch_size=8):
    task = AddingTask(seq_len=6, train_size=40, valid_size=4, test_size=4, data_seed=3)
    task.start(batch_size=batch_size, eval_batch_size=4, test_batch_size=4, device=torch.device("cpu"),
               rank=rank, world_size=world)
    return task


def test_two_ranks_split_each_single_process_batch():
    alone = list(started().batches(2, 0))
    halves = [list(started(world=2, rank=r).batches(2, 0)) for r in (0, 1)]
    assert started(world=2).epoch_size() == 40 // 8 == len(alone)
    for step, (position, batch) in enumerate(alone):
        assert position == step + 1
        for key in ("x", "y"):
            dim = 1 if key == "x" else 0                           # x (T, B, 2), y (B,)
            joined = torch.cat([halves[0][step][1][key], halves[1][step][1][key]], dim=dim)
            assert torch.equal(joined, batch[key])


def test_the_last_batches_that_do_not_fill_every_rank_are_left_out():
    task = started(world=2, batch_size=6)                           # batches of 3: 14 of them
    assert task.epoch_size() == 14 // 2


def test_a_batch_size_that_does_not_divide_over_the_ranks_is_refused():
    with pytest.raises(ValueError, match="divide evenly over the 2 processes"):
        started(world=2, batch_size=7)


def test_resuming_mid_epoch_replays_the_same_batches():
    task = started()
    full = list(task.batches(1, 0))
    rest = list(task.batches(1, 2))
    assert [p for p, _ in rest] == [p for p, _ in full[2:]]
    assert all(torch.equal(a["x"], b["x"]) for (_, a), (_, b) in zip(rest, full[2:]))
    assert task.count(full[0][1]) == 8
