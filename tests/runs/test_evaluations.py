"""RUN/evaluations.json: records accumulate, concurrent writers lose none, a broken file is left
alone, and the report's reading picks the summary's number first, else the latest best-weights record."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from rnnreg.runs.evaluations import (EvaluationsError, append_evaluations, evaluation_record, latest_value,
                                     method_numbers, read_evaluations)


def _record(method="cache", split="test", ppl=100.0, checkpoint="best", overrides=(), step=10):
    return evaluation_record(method=method, split=split, metric="ppl", loss=4.6, value=ppl, settings={"window": 5},
                             checkpoint=checkpoint, step=step, batch_size=1, overrides=overrides)


def test_records_accumulate_one_per_line(tmp_path):
    assert read_evaluations(tmp_path) == []
    append_evaluations(tmp_path, [_record(ppl=1.0)])
    append_evaluations(tmp_path, [_record(ppl=2.0), _record(method="plain", ppl=3.0)])
    records = read_evaluations(tmp_path)
    assert [r["ppl"] for r in records] == [1.0, 2.0, 3.0]
    assert records[0]["settings"] == {"window": 5} and records[0]["rnnreg"] and records[0]["step"] == 10
    lines = (tmp_path / "evaluations.json").read_text().splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method must be one of plain, cache, dynamic, mc"):
        _record(method="pointer")


@pytest.mark.parametrize("text", ['{"a": 1}', "[1, 2]", "[{]", "\xff"])
def test_a_broken_file_is_refused_and_left_alone(tmp_path, text):
    path = tmp_path / "evaluations.json"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(EvaluationsError, match="evaluations.json is (unreadable|not a list)"):
        append_evaluations(tmp_path, [_record()])
    assert path.read_text(encoding="latin-1") == text


def _append_many(folder, worker):
    for k in range(15):
        append_evaluations(folder, [_record(ppl=float(100 * worker + k))])


@pytest.mark.slow
def test_concurrent_writers_lose_no_record(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert all(w.exitcode == 0 for w in workers)
    values = sorted(r["ppl"] for r in read_evaluations(tmp_path))
    assert values == sorted(float(100 * w + k) for w in range(4) for k in range(15))


def test_the_latest_record_of_the_best_weights_on_the_run_s_own_data_counts():
    records = [_record(ppl=1.0), _record(ppl=2.0), _record(ppl=3.0, checkpoint="last"),
               _record(ppl=4.0, overrides=("model.hidden_size=8",)), _record(ppl=5.0, overrides=("data.path=/d",)),
               _record(split="valid", ppl=6.0), _record(method="dynamic", ppl=7.0)]
    assert latest_value(records, "cache", "test", "ppl") == 5.0     # last, checkpoint, data.path: all fine
    assert latest_value(records, "cache", "valid", "ppl") == 6.0
    assert latest_value(records, "mc", "test", "ppl") is None
    assert latest_value(records, "cache", "test", "bpc") is None     # a record of another metric


def test_a_finished_run_counts_only_records_of_its_best_weights():
    # Scored at step 10 (the best of a stop), then the run went on and its best became step 30.
    records = [_record(ppl=90.0, step=10), _record(ppl=80.0, step=30), _record(ppl=70.0, step=10)]
    assert latest_value(records, "cache", "test", "ppl") == 70.0            # no best step known: the latest
    assert latest_value(records, "cache", "test", "ppl", best_step=30) == 80.0
    assert method_numbers({"best_step": 20}, records, "ppl") == {}           # none of those weights


def test_the_summary_comes_first_then_the_records():
    records = [_record(ppl=90.0), _record(split="valid", ppl=95.0), _record(method="dynamic", ppl=80.0)]
    got = method_numbers({"test_cache": 70.0, "valid_mc": 101.0}, records, "ppl")
    assert got == {"cache": (95.0, 70.0), "dynamic": (None, 80.0), "mc": (101.0, None)}
    assert method_numbers({}, [], "ppl") == {}
    assert json.loads(json.dumps(got)) == {k: list(v) for k, v in got.items()}
