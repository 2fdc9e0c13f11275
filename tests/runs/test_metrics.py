"""metrics.jsonl writing/reading, resume truncation, loss -> metric conversions, TensorBoard sink."""

from __future__ import annotations

import json
import logging
import math
import sys
import types

import pytest
import torch

from rnnreg.runs.metrics import MetricsFormatError, MetricsLog, TensorBoardSink, read_metrics, truncate_after


def _step(step: int, loss: float) -> dict:
    return {"kind": "step", "step": step, "epoch": 1 + step // 4, "lr": 30.0, "seq_len": 70,
            "loss": loss, "ppl": math.exp(loss), "bpc": None,
            "penalties": {"ar": 0.01, "tar": 0.02, "norm_stabilizer": 0.0, "weight": 0.0},
            "grad_norm": 0.9, "tokens_per_s": 5000.0, "time": 0.5 * step}


def _strict_json(line: str) -> dict:
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name} in {line!r}")
    return json.loads(line, parse_constant=refuse)


# --- writing and reading -------------------------------------------------------------------------

def test_round_trip_with_non_finite_values_keeps_json_valid(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"  # the parent directory does not exist yet
    records = [_step(1, 5.0), {**_step(2, math.nan), "ppl": math.inf, "grad_norm": -math.inf},
               {"kind": "eval", "step": 2, "epoch": 1, "split": "valid", "loss": torch.tensor(4.5),
                "ppl": None, "bpc": None, "averaged": False, "time": 1.0},
               {"kind": "event", "step": 2, "epoch": 1, "message": "nan"}]
    with MetricsLog(path) as log:
        for r in records:
            log.log(r)
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    parsed = [_strict_json(line) for line in lines]
    assert parsed[1]["loss"] == "nan" and parsed[1]["ppl"] == "inf" and parsed[1]["grad_norm"] == "-inf"
    back = read_metrics(path)
    assert back[0] == records[0]
    assert math.isnan(back[1]["loss"]) and back[1]["ppl"] == math.inf
    assert back[1]["grad_norm"] == -math.inf
    assert back[2]["loss"] == 4.5 and isinstance(back[2]["loss"], float)
    assert back[3]["message"] == "nan"  # free text is never decoded into a float


def test_each_line_is_flushed_before_close(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    log.log(_step(1, 5.0))
    assert read_metrics(path) == [_step(1, 5.0)]  # a reader (or a kill) sees it immediately
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.log(_step(2, 5.0))


def test_disabled_log_writes_nothing(tmp_path):
    with MetricsLog(tmp_path / "metrics.jsonl", enabled=False) as log:
        log.log(_step(1, 5.0))
    assert not (tmp_path / "metrics.jsonl").exists()


def test_log_validates_records(tmp_path):
    with MetricsLog(tmp_path / "metrics.jsonl") as log:
        with pytest.raises(TypeError, match="record"):
            log.log([("kind", "step")])
        with pytest.raises(ValueError, match="kind"):
            log.log({"step": 3})


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    full = json.dumps(_step(2, 4.0))
    path.write_text(json.dumps(_step(1, 5.0)) + "\n" + full[: len(full) // 2])
    with caplog.at_level(logging.WARNING, logger="rnnreg.runs.metrics"):
        assert read_metrics(path) == [_step(1, 5.0)]
    assert "truncated" in caplog.text


def test_bad_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(_step(1, 5.0)) + "\n{oops\n" + json.dumps(_step(2, 4.0)) + "\n")
    with pytest.raises(MetricsFormatError, match=":2:"):
        read_metrics(path)
    assert issubclass(MetricsFormatError, ValueError)


def test_reopening_after_a_kill_drops_the_partial_line(tmp_path):
    # Without the repair the next record would be glued onto the fragment, corrupting the log.
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(_step(1, 5.0)) + "\n" + '{"kind": "st')
    with MetricsLog(path) as log:
        log.log(_step(2, 4.0))
    assert read_metrics(path) == [_step(1, 5.0), _step(2, 4.0)]


def test_resume_with_truncate_after_equals_the_uninterrupted_log(tmp_path):
    def epoch(e, step):
        return {"kind": "epoch", "epoch": e, "step": step, "train_loss": 5.0, "valid_loss": 4.9,
                "lr": 30.0, "time": 1.0}

    def write(log, first, last):
        for s in range(first, last + 1):
            log.log(_step(s, 6.0 - 0.1 * s))
            if s % 4 == 0:
                log.log(epoch(s // 4, s))

    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    with MetricsLog(whole) as log:
        write(log, 1, 10)
    with MetricsLog(resumed) as log:
        write(log, 1, 7)  # killed at step 7 mid-line, last checkpoint at step 4
    with open(resumed, "a") as f:
        f.write('{"kind": "step", "st')
    assert truncate_after(resumed, 4) == 3  # steps 5, 6, 7 (the fragment is not a record)
    assert [r["step"] for r in read_metrics(resumed)] == [1, 2, 3, 4, 4]
    with MetricsLog(resumed) as log:
        write(log, 5, 10)
    assert resumed.read_bytes() == whole.read_bytes()


def test_truncate_after_edge_cases(tmp_path):
    assert truncate_after(tmp_path / "missing.jsonl", 3) == 0
    assert not (tmp_path / "missing.jsonl").exists()
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.log({"kind": "event", "message": "no step field"})
        log.log(_step(9, math.nan))
    assert truncate_after(path, 0) == 1
    assert read_metrics(path) == [{"kind": "event", "message": "no step field"}]
    with pytest.raises(TypeError, match="step"):
        truncate_after(path, True)


# --- TensorBoard -----------------------------------------------------------------------------------

class _FakeWriter:
    instances: list[_FakeWriter] = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.texts, self.closed = log_dir, {}, [], False
        _FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars[(tag, step)] = value

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def close(self):
        self.closed = True


def test_tensorboard_sink_mirrors_records(tmp_path, monkeypatch):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = _FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    sink = TensorBoardSink(tmp_path / "tb")
    with MetricsLog(tmp_path / "metrics.jsonl", sinks=[sink]) as log:
        log.log(_step(3, 5.0))
        log.log({"kind": "eval", "step": 3, "epoch": 1, "split": "valid", "loss": 4.9, "ppl": 134.2,
                 "bpc": None, "averaged": False, "time": 40.1})
        log.log({"kind": "event", "step": 3, "epoch": 1, "message": "switched to averaged SGD"})
    writer = _FakeWriter.instances[-1]
    assert writer.log_dir == str(tmp_path / "tb") and writer.closed
    assert writer.scalars[("train/loss", 3)] == 5.0
    assert writer.scalars[("train/penalties/tar", 3)] == 0.02
    assert writer.scalars[("valid/ppl", 3)] == 134.2
    assert not any(tag.endswith(("/time", "/step", "/bpc", "/averaged")) for tag, _ in writer.scalars)
    assert writer.texts == [("events", "switched to averaged SGD", 3)]


def test_tensorboard_sink_without_tensorboard_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoardSink(tmp_path / "tb")
