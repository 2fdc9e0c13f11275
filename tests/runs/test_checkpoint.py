"""Checkpoints: data-only round trip, atomic writes, corruption detection with .prev fallback, RNG."""

from __future__ import annotations

import enum
import errno
import functools
import hashlib
import io
import logging
import os
import random
import re
import signal
import struct
import time
import zipfile
from collections import OrderedDict, defaultdict, namedtuple
from pathlib import Path

import pytest
import torch

from rnnreg.runs.checkpoint import (CheckpointError, load_checkpoint, load_checkpoint_with_source,
                               move_to_cpu, prev_path, save_checkpoint)
from rnnreg.training.rng import capture_rng, restore_rng

TRAILER = 44  # the zip comment: magic 8 + version 4 + sha256 32, as the module docstring specifies
EOCD = 22  # the zip's end-of-central-directory record, before the comment
LEGACY_HEADER = 52  # format 1 (rnnreg 0.1): magic 8 + version 4 + length 8 + sha256 32


def _trained(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Embedding(11, 4), torch.nn.LSTM(4, 6))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _step(model, opt)  # Adam now has per-parameter exp_avg / exp_avg_sq / step
    return model, opt


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    x = torch.arange(6).remainder(11).view(3, 2)  # (T=3, B=2) token ids
    out, _ = model(x)  # (T, B, 6)
    opt.zero_grad()
    out.pow(2).mean().backward()
    opt.step()


@functools.cache  # built once per seed: tests only read it
def _payload(seed: int = 0) -> dict:
    model, opt = _trained(seed)
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": capture_rng(),
            "config": {"layers": [{"hidden": 6, "dropout": 0.25}], "name": "lm", "tied": True,
                       "clip": None, "betas": (0.9, 0.999)},
            "epoch": 3 + seed, "step": 1200, "history": [4.5, 3.25, float("inf")]}


def _assert_same(a, b, where: str = "payload") -> None:
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _assert_same(u, v, f"{where}[{i}]")
    else:
        assert a == b, where


def _two_saves(tmp_path: Path) -> tuple[Path, dict, dict]:
    path = tmp_path / "last.pt"
    old, new = _payload(0), _payload(1)
    save_checkpoint(path, old)
    save_checkpoint(path, new)
    return path, old, new


def _frame(body: bytes, version: int = 2) -> bytes:
    # Independent re-implementation of the documented trailer, to forge files: the zip's empty
    # comment becomes magic, version and the SHA-256 of every byte before the digest.
    assert body[-EOCD:-EOCD + 4] == b"PK\x05\x06" and body[-2:] == b"\0\0"
    signed = body[:-2] + struct.pack("<H", TRAILER) + b"RNNRGCK\x02" + struct.pack("<I", version)
    return signed + hashlib.sha256(signed).digest()


def _legacy_frame(body: bytes) -> bytes:
    # Format 1, as rnnreg 0.1 wrote it: a 52-byte header before the torch.save bytes.
    digest = hashlib.sha256(struct.pack("<IQ", 1, len(body)) + body).digest()
    return struct.pack("<8sIQ32s", b"RNNRGCK\x00", 1, len(body), digest) + body


def _torch_bytes(payload: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def test_round_trip_restores_training_exactly(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    payload = _payload()
    save_checkpoint(path, payload)
    loaded, source = load_checkpoint_with_source(path)
    assert source == path
    _assert_same(payload, loaded)
    assert loaded["model"]._metadata == payload["model"]._metadata
    # Resuming from the loaded state continues exactly like the uninterrupted run.
    model, opt = _trained(0)
    resumed, resumed_opt = _trained(5)
    resumed.load_state_dict(loaded["model"])
    resumed_opt.load_state_dict(loaded["optimizer"])
    _step(model, opt)
    _step(resumed, resumed_opt)
    _assert_same(model.state_dict(), resumed.state_dict())


def test_save_keeps_previous_as_prev_and_leaves_no_temp(tmp_path: Path) -> None:
    path, old, new = _two_saves(tmp_path)
    _assert_same(load_checkpoint(path), new)
    _assert_same(load_checkpoint(prev_path(path)), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.prev"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fsynced fds")
def test_data_is_fsynced_before_rename_and_directory_after(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint(path, {"step": 2})
    assert events == [("fsync", "last.pt.tmp"), ("replace", "last.pt", "last.pt.prev"),
                      ("replace", "last.pt.tmp", "last.pt"), ("fsync", tmp_path.name)]


@pytest.mark.parametrize("failing_call", ["replace:1", "replace:2", "fsync:1"])
def test_crash_mid_save_keeps_old_checkpoint(tmp_path, monkeypatch, failing_call) -> None:
    path, _, new = _two_saves(tmp_path)
    name, nth = failing_call.split(":")
    real, calls = getattr(os, name), []

    def crash(*args, **kwargs):
        calls.append(args)
        if len(calls) == int(nth):
            raise OSError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, crash)
    with pytest.raises(CheckpointError, match=r"could not write .*last\.pt \(simulated crash\): "
                                              "the previous checkpoint is kept$"):
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    assert not (tmp_path / "last.pt.tmp").exists()
    _assert_same(load_checkpoint(path), new)  # from last.pt, or from .prev after the first rename


@pytest.mark.parametrize("cut", [0, 2, 7, 100, "half", -TRAILER - EOCD, -TRAILER - 1, -TRAILER, -32, -1])
def test_truncation_falls_back_to_prev(tmp_path, caplog, cut) -> None:
    path, old, _ = _two_saves(tmp_path)
    data = path.read_bytes()
    size = len(data) // 2 if cut == "half" else cut % len(data)
    path.write_bytes(data[:size])
    with caplog.at_level(logging.WARNING, logger="rnnreg.runs.checkpoint"):
        loaded, source = load_checkpoint_with_source(path)
    assert source == prev_path(path)
    _assert_same(loaded, old)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert str(path) in record.message and "truncated" in record.message


def _tensor_offset(data: bytes, tensor: torch.Tensor) -> int:
    offset = data.find(tensor.numpy().tobytes())
    assert offset > 30  # past the first local file header
    return offset


@pytest.mark.parametrize("where", ["zip magic", "local header", "tensor", "half", "central directory", "eocd",
                                   "comment length", "trailer magic", "version", "digest", "last"])
def test_flipped_byte_falls_back_to_prev(tmp_path, caplog, where) -> None:
    path, old, new = _two_saves(tmp_path)
    data = bytearray(path.read_bytes())
    tail = len(data) - TRAILER - EOCD
    offsets = {"zip magic": 0, "local header": 10, "half": len(data) // 2,
               "tensor": _tensor_offset(data, new["model"]["1.weight_hh_l0"]) + 5,
               "central directory": data.rfind(b"PK\x01\x02") + 12, "eocd": tail + 1,
               "comment length": tail + EOCD - 2, "trailer magic": tail + EOCD + 3,
               "version": tail + EOCD + 8, "digest": tail + EOCD + 12, "last": len(data) - 1}
    data[offsets[where]] ^= 0x04
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="rnnreg.runs.checkpoint"):
        loaded, source = load_checkpoint_with_source(path)
    assert source == prev_path(path)
    _assert_same(loaded, old)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert str(path) in caplog.records[0].message and "corrupt" in caplog.records[0].message


def test_plain_torch_load_reads_a_checkpoint(tmp_path: Path) -> None:
    # Weights leave rnnreg: the checksum sits in the zip's comment, which torch's reader skips.
    path = tmp_path / "best.pt"
    save_checkpoint(path, _payload())
    _assert_same(torch.load(path, weights_only=True), _payload())
    _assert_same(torch.load(io.BytesIO(path.read_bytes()), weights_only=True, mmap=False), _payload())
    _assert_same(torch.load(path, weights_only=True, mmap=True), _payload())
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None and archive.comment.startswith(b"RNNRGCK\x02")


def test_a_large_checkpoint_with_zip64_records_still_loads(tmp_path: Path) -> None:
    # torch writes zip64 end records (and uses them past 4 GiB): the comment goes after them.
    path, big = tmp_path / "big.pt", torch.randn(3 << 20)
    save_checkpoint(path, {"big": big})
    data = path.read_bytes()
    assert data.rfind(b"PK\x06\x06") > 0 and data.rfind(b"PK\x06\x07") > 0
    assert torch.equal(torch.load(path, weights_only=True)["big"], big)
    assert torch.equal(load_checkpoint(path)["big"], big)


def test_format_1_checkpoints_still_load(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    path.write_bytes(_legacy_frame(_torch_bytes(_payload())))
    _assert_same(load_checkpoint(path), _payload())
    save_checkpoint(path, {"step": 2})          # a good format-1 file is rotated like any other
    _assert_same(load_checkpoint(prev_path(path)), _payload())


@pytest.mark.parametrize("cut, damage", [(0, "truncated"), (LEGACY_HEADER - 1, "truncated"),
                                         (LEGACY_HEADER + 100, "truncated"), (-1, "truncated"),
                                         ("flip", "checksum mismatch")])
def test_damaged_format_1_checkpoint_falls_back(tmp_path, cut, damage) -> None:
    path = tmp_path / "best.pt"
    prev_path(path).write_bytes(_legacy_frame(_torch_bytes({"step": 1})))
    data = bytearray(_legacy_frame(_torch_bytes({"step": 2})))
    if cut == "flip":
        data[len(data) // 2] ^= 0x10
    else:
        data = data[:cut % len(data)]
    path.write_bytes(data)
    assert load_checkpoint(path) == {"step": 1}
    prev_path(path).unlink()
    with pytest.raises(CheckpointError, match=damage):
        load_checkpoint(path)


def test_torch_load_alone_misses_a_flip_in_tensor_data() -> None:
    # Why the SHA-256 framing exists: torch.load does not verify the zip CRCs.
    weight = torch.linspace(-1, 1, 256)
    buf = io.BytesIO()
    torch.save({"w": weight}, buf)
    data = bytearray(buf.getvalue())
    data[data.find(weight.numpy().tobytes()) + 2] ^= 0x04
    loaded = torch.load(io.BytesIO(bytes(data)), weights_only=True)["w"]
    assert not torch.equal(loaded, weight)


def test_no_good_checkpoint_raises_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    with pytest.raises(CheckpointError) as missing:
        load_checkpoint(path)
    assert str(missing.value) == f"no usable checkpoint: {path} does not exist; {path}.prev does not exist"
    save_checkpoint(path, {"step": 1})
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CheckpointError) as truncated:
        load_checkpoint(path)
    message = str(truncated.value)
    assert "\n" not in message
    assert f"{path} is truncated" in message and f"{path}.prev does not exist" in message
    save_checkpoint(path, {"step": 2})  # a broken current file is not rotated to .prev
    assert not prev_path(path).exists()
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(data)
    prev_path(path).write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"checksum mismatch\); .*\.prev is corrupt or not an rnnreg"):
        load_checkpoint(path)


def test_truncated_current_is_not_rotated_over_good_prev(tmp_path, caplog) -> None:
    path, old, _ = _two_saves(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="rnnreg.runs.checkpoint"):
        save_checkpoint(path, {"step": 3})
    assert "keeping" in caplog.text
    _assert_same(load_checkpoint(prev_path(path)), old)
    assert load_checkpoint(path) == {"step": 3}


_executed: list[str] = []


def _side_effect() -> dict:
    _executed.append("unpickled code ran")
    return {}


class _Evil:
    def __reduce__(self):
        return (_side_effect, ())


def test_pickled_object_is_refused_at_load(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"step": 1, "evil": _Evil()}, buf)
    path = tmp_path / "last.pt"
    path.write_bytes(_frame(buf.getvalue()))  # a valid checksum: only weights_only stands guard
    with pytest.raises(CheckpointError, match=r"weights_only=True \(Unsupported global: .*_side_effect"):
        load_checkpoint(path)
    path.write_bytes(_legacy_frame(buf.getvalue()))
    with pytest.raises(CheckpointError, match=r"weights_only=True \(Unsupported global: .*_side_effect"):
        load_checkpoint(path)
    assert _executed == []


def test_a_newer_format_is_named(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(_frame(_torch_bytes({"step": 1}), version=3))
    with pytest.raises(CheckpointError, match="from a newer rnnreg"):
        load_checkpoint(path)


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "disk full while writing {path}: the previous "
                                                          "checkpoint is kept; free some space and try again"),
                                           (errno.EIO, "could not write {path} (Input/output error): "
                                                       "the previous checkpoint is kept")])
def test_a_failed_write_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, code, message):
    path, old, new = _two_saves(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_open = open

    class FullFile:
        # Half of the bytes fit, then the disk is full: the partial temp file must not survive.
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(data)[:len(data) // 2])
            raise OSError(code, os.strerror(code))

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FullFile(f) if str(file).endswith(".tmp") and "w" in mode else f

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(CheckpointError) as failed:
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    assert str(failed.value) == message.format(path=path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    _assert_same(load_checkpoint(path), new)


def test_checkpoints_get_the_permissions_of_other_run_files(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path, _, _ = _two_saves(tmp_path)
    finally:
        os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {0o644}


class _Mode(enum.IntEnum):
    TRAIN = 1


@pytest.mark.parametrize("bad, where", [(_Mode.TRAIN, "payload['config']['mode']"),
                                        (object(), "payload['config']['mode']"),
                                        ({2, _Mode.TRAIN}, "payload['config']['mode'][")])
def test_save_refuses_non_data_and_keeps_old_files(tmp_path, bad, where) -> None:
    path, old, new = _two_saves(tmp_path)
    with pytest.raises(TypeError, match="^" + re.escape(where)):
        save_checkpoint(path, {"config": {"mode": bad}})
    _assert_same(load_checkpoint(path), new)
    _assert_same(load_checkpoint(prev_path(path)), old)
    assert not (tmp_path / "last.pt.tmp").exists()


def test_argument_validation(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="payload"):
        save_checkpoint(tmp_path / "x.pt", [1, 2])
    with pytest.raises(TypeError, match="path"):
        save_checkpoint(3, {})
    with pytest.raises(TypeError, match="path"):
        load_checkpoint(None)
    with pytest.raises(TypeError, match="state"):
        restore_rng([1])
    with pytest.raises(ValueError, match="python"):
        restore_rng({"torch": torch.get_rng_state()})
    with pytest.raises(ValueError, match=r"state\['torch'\]"):
        restore_rng({"torch": torch.zeros(3), "python": random.getstate()})


def _draws() -> tuple:
    return (torch.rand(4), torch.randint(0, 1000, (3,)), random.random(), random.gauss(0, 1),
            torch.nn.functional.dropout(torch.ones(8), 0.5))


def test_rng_round_trip_through_checkpoint(tmp_path: Path) -> None:
    random.gauss(0, 1)  # leaves a cached gauss_next in Python's state: it must survive too
    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"rng": capture_rng()})
    expected = _draws()
    with pytest.raises(AssertionError):  # the generators did advance, so the match below means something
        _assert_same(_draws(), expected)
    restore_rng(load_checkpoint(path)["rng"])
    _assert_same(_draws(), expected)


def test_cuda_states_are_captured_and_restored(monkeypatch, caplog) -> None:
    restored = []
    states = [torch.full((16,), 7, dtype=torch.uint8), torch.full((16,), 9, dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((device, s)))
    state = capture_rng()
    assert state["cuda"] == states
    with caplog.at_level(logging.WARNING, logger="rnnreg.training.rng"):
        restore_rng(state)
    assert [(d, s.tolist()) for d, s in restored] == [(0, states[0].tolist())]
    assert "2 CUDA generator(s) but 1 device(s)" in caplog.text


def test_move_to_cpu_keeps_structure_and_metadata() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sd = model.to(device).state_dict()
    pair = namedtuple("pair", "a b")
    counts = defaultdict(list, {"k": [torch.zeros(2, device=device)]})
    tree = {"model": sd, "list": [torch.ones(1, device=device), (2, "x")], "n": None,
            "pair": pair(torch.ones(1, device=device), 3), "counts": counts}
    moved = move_to_cpu(tree)
    assert type(moved["pair"]) is pair and moved["pair"].a.device.type == "cpu" and moved["pair"].b == 3
    assert type(moved["counts"]) is defaultdict and moved["counts"].default_factory is list
    assert moved["counts"]["k"][0].device.type == "cpu"
    assert type(moved["model"]) is OrderedDict and moved["model"]._metadata == sd._metadata
    assert all(t.device.type == "cpu" for t in moved["model"].values())
    assert moved["list"][0].device.type == "cpu" and moved["list"][1] == (2, "x") and moved["n"] is None
    torch.nn.Sequential(torch.nn.Linear(2, 3)).load_state_dict(moved["model"])


def _writer_loop(path: Path, big: torch.Tensor) -> None:
    # Runs in a forked child until SIGKILLed. Only small tensors are created here: a forked child
    # must not enter the parent's OpenMP pool (large ops would) or it may hang.
    step = load_checkpoint(path)["step"] + 1 if path.exists() or prev_path(path).exists() else 0
    while True:
        save_checkpoint(path, {"step": step, "stamp": torch.tensor([step]), "big": big})
        step += 1


@pytest.mark.slow  # forks writers and SIGKILLs them
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkilled_writer_always_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path, rng = tmp_path / "last.pt", random.Random(0)
    big = torch.randn(1 << 20)  # 4 MiB: a write takes long enough to be hit mid-way
    last_step, hit_mid_write = -1, 0
    for _ in range(12):
        pid = os.fork()
        if pid == 0:
            try:
                _writer_loop(path, big)
            finally:
                os._exit(1)
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        hit_mid_write += (tmp_path / "last.pt.tmp").exists()
        loaded = load_checkpoint(path)
        assert loaded["stamp"].item() == loaded["step"] >= last_step
        assert torch.equal(loaded["big"], big)
        last_step = loaded["step"]
        assert {p.name for p in tmp_path.iterdir()} <= {"last.pt", "last.pt.prev", "last.pt.tmp"}
    assert hit_mid_write > 0  # at least one kill landed while a temp file was being written
