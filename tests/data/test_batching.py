"""batchify / shard_columns / get_batch shapes and coverage, and the variable-length BPTT schedule."""

from __future__ import annotations

import io
import statistics

import pytest
import torch

from rnnreg.data import BPTTSchedule, batchify, get_batch, shard_columns


# --- batchify -----------------------------------------------------------------------------------

def test_batchify_lays_contiguous_pieces_side_by_side_and_drops_the_remainder():
    data = torch.arange(23)
    batched = batchify(data, 4)  # 23 // 4 = 5 rows, the last 3 tokens dropped
    assert batched.shape == (5, 4) and batched.is_contiguous()
    for b in range(4):
        assert batched[:, b].tolist() == list(range(5 * b, 5 * b + 5))


@pytest.mark.parametrize("data, batch_size, error", [
    (torch.arange(10).view(2, 5), 2, ValueError),
    (torch.arange(10), 0, ValueError),
    (torch.arange(10), 2.0, TypeError),
    (torch.arange(7), 4, ValueError),  # one row: no room for a target
])
def test_batchify_refuses_bad_input(data, batch_size, error):
    with pytest.raises(error):
        batchify(data, batch_size)


# --- shard_columns ------------------------------------------------------------------------------

@pytest.mark.parametrize("columns, world_size", [(8, 4), (7, 3), (5, 5), (10, 1)])
def test_shards_are_contiguous_blocks_that_concatenate_back_to_the_whole(columns, world_size):
    batched = batchify(torch.arange(columns * 6), columns)
    shards = [shard_columns(batched, r, world_size) for r in range(world_size)]
    assert torch.equal(torch.cat(shards, dim=1), batched)
    widths = [s.size(1) for s in shards]
    assert max(widths) - min(widths) <= 1 and widths == sorted(widths, reverse=True)
    assert all(s.is_contiguous() and s.size(0) == batched.size(0) for s in shards)


def test_sharding_refuses_more_ranks_than_columns_and_bad_ranks():
    batched = batchify(torch.arange(30), 3)
    with pytest.raises(ValueError, match="fewer than world_size"):
        shard_columns(batched, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        shard_columns(batched, 3, 3)
    with pytest.raises(ValueError, match="2-D"):
        shard_columns(torch.arange(30), 0, 1)


# --- get_batch ----------------------------------------------------------------------------------

def test_get_batch_targets_are_the_inputs_shifted_by_one():
    source = batchify(torch.arange(60), 3)  # (20, 3)
    x, y = get_batch(source, 4, 6)
    assert x.shape == y.shape == (6, 3)
    assert torch.equal(x, source[4:10]) and torch.equal(y, source[5:11])
    assert torch.equal(y, x + 1)  # consecutive ids within each column


def test_the_last_window_is_clipped_so_targets_stay_inside():
    source = batchify(torch.arange(60), 3)
    x, y = get_batch(source, 15, 10)
    assert x.shape == (4, 3)  # T = min(10, 20 - 1 - 15)
    assert torch.equal(y[-1], source[-1])
    with pytest.raises(ValueError, match="i must be"):
        get_batch(source, 19, 5)
    with pytest.raises(ValueError, match="seq_len"):
        get_batch(source, 0, 0)


def test_one_epoch_of_windows_covers_every_input_and_target_once():
    source = batchify(torch.arange(1000), 4)  # (250, 4)
    schedule = BPTTSchedule(20, std=8.0, seed=3)
    xs, ys = [], []
    for i, seq_len in schedule.windows(source.size(0)):
        x, y = get_batch(source, i, seq_len)
        assert x.size(0) == seq_len
        xs.append(x)
        ys.append(y)
    assert torch.equal(torch.cat(xs), source[:-1]) and torch.equal(torch.cat(ys), source[1:])


# --- BPTTSchedule -------------------------------------------------------------------------------

def draws(schedule: BPTTSchedule, n: int) -> list[int]:
    return [schedule.next_length() for _ in range(n)]


def test_fixed_schedule_always_gives_bptt():
    schedule = BPTTSchedule(35, variable=False)
    assert set(draws(schedule, 100)) == {35}
    windows = list(schedule.windows(100))
    assert windows[0] == (0, 35) and windows[-1] == (70, 29)


def test_variable_lengths_follow_the_two_normals_of_merity_et_al():
    n, bptt, p = 20_000, 70, 0.95
    lengths = draws(BPTTSchedule(bptt, p=p, std=5.0, seed=1), n)
    # the bases 70 and 35 lie 7 standard deviations apart: split the draws halfway
    long = [x for x in lengths if x > 52]
    short = [x for x in lengths if x <= 52]
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(len(long) / n - p) < 4 * sigma
    # int() truncates a positive draw toward zero, which lowers the mean by about 1/2
    assert abs(statistics.fmean(long) - (70 - 0.5)) < 0.15
    assert abs(statistics.fmean(short) - (35 - 0.5)) < 0.8
    assert abs(statistics.pstdev(long) - 5.0) < 0.2


def test_p_one_and_p_zero_pick_a_single_base():
    assert statistics.fmean(draws(BPTTSchedule(70, p=1.0, seed=2), 2000)) > 65
    assert statistics.fmean(draws(BPTTSchedule(70, p=0.0, seed=2), 2000)) < 40


def test_lengths_are_floored_at_min_len_and_capped_at_bptt_plus_max_delta():
    lengths = draws(BPTTSchedule(20, std=60.0, min_len=5, max_delta=40, seed=4), 5000)
    assert min(lengths) == 5 and max(lengths) == 60


def test_lr_scale_is_seq_len_over_bptt():
    schedule = BPTTSchedule(70)
    assert schedule.lr_scale(70) == 1.0 and schedule.lr_scale(35) == 0.5
    assert schedule.lr_scale(105) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="seq_len"):
        schedule.lr_scale(0)


def test_the_seed_decides_the_lengths():
    assert draws(BPTTSchedule(70, seed=5), 50) == draws(BPTTSchedule(70, seed=5), 50)
    assert draws(BPTTSchedule(70, seed=5), 50) != draws(BPTTSchedule(70, seed=6), 50)


def test_a_restored_state_draws_exactly_the_same_lengths():
    schedule = BPTTSchedule(70, seed=11)
    draws(schedule, 7)
    state = schedule.state_dict()
    # random.gauss makes normals in pairs and caches the second: the state must carry it
    assert state["gauss_next"] is not None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = BPTTSchedule(70, seed=999)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert draws(restored, 200) == draws(schedule, 200)


def test_resuming_mid_epoch_continues_the_same_windows():
    full = list(BPTTSchedule(30, seed=8).windows(1000))
    first = BPTTSchedule(30, seed=8)
    epoch = first.windows(1000)
    done = [next(epoch) for _ in range(10)]
    state, start = first.state_dict(), done[-1][0] + done[-1][1]
    resumed = BPTTSchedule(30, seed=0)
    resumed.load_state_dict(state)
    assert done + list(resumed.windows(1000, start=start)) == full


@pytest.mark.parametrize("kwargs, error", [
    ({"bptt": 0}, ValueError), ({"bptt": 70.0}, TypeError), ({"bptt": 70, "p": 1.5}, ValueError),
    ({"bptt": 70, "std": -1.0}, ValueError), ({"bptt": 10, "min_len": 60, "max_delta": 40}, ValueError),
    ({"bptt": 70, "max_delta": -1}, ValueError),
])
def test_schedule_arguments_are_validated(kwargs, error):
    bptt = kwargs.pop("bptt")
    with pytest.raises(error):
        BPTTSchedule(bptt, **kwargs)


def test_load_state_dict_refuses_an_incomplete_state():
    with pytest.raises(ValueError, match="missing"):
        BPTTSchedule(70).load_state_dict({"rng_version": 3})
