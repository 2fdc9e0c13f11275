"""`rnnreg eval --cache / --dynamic`: the method beside the plain score, the validation searches,
every result kept in RUN/evaluations.json, the end of a run recording them in summary.json,
the report setting a method's reference beside the method's number, and bad combinations refused
in one line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnreg.cli import main
from rnnreg.config import load_config
from rnnreg.runs.evaluations import read_evaluations
from rnnreg.runs.run_dir import RunDir

from lm_fixtures import train_tiny_run
from task_fixtures import trained_adding_run

METHODS = ["evaluation.cache_window=40", "evaluation.cache_lambda=0.2", "evaluation.dynamic=true",
           "evaluation.dynamic_batch_size=4", "evaluation.dynamic_max_batches=20"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> RunDir:
    """A tiny AWD-LSTM run whose config turns both evaluation-time methods on."""
    return train_tiny_run(tmp_path_factory.mktemp("methods"), "train.max_steps=12", *METHODS)


def _block(out: str) -> dict[str, tuple[float, float]]:
    """{"plain": (loss, ppl), "cache": ...} from the printed block."""
    found = {}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("  ") and "loss" in words:
            at = words.index("loss")
            found[words[0]] = (float(words[at + 1]), float(words[at + 3]))
    return found


@pytest.mark.slow
def test_the_end_of_a_run_scores_both_methods(lm_run):
    summary = json.loads(lm_run.summary.read_text())
    for split in ("valid", "test"):
        for method in ("cache", "dynamic"):      # the same text as the plain score, read as one stream
            value = summary[f"{split}_{method}"]
            assert isinstance(value, float) and 0.7 * summary[split] < value < 1.3 * summary[split], (split, method)
    assert summary["cache"] == {"window": 40, "theta": 1.0, "lambda": 0.2}
    assert summary["dynamic"]["batch_size"] == 4 and summary["dynamic"]["max_batches"] == 20


@pytest.mark.slow
def test_eval_cache_prints_the_gain_and_keeps_every_result(lm_run, capsys):
    path = lm_run.path
    (path / "evaluations.json").unlink(missing_ok=True)
    assert main(["eval", str(path), "--cache", "40", "--cache-lambda", "0.2"]) == 0
    block = _block(capsys.readouterr().out)
    assert set(block) == {"plain", "cache"}
    # The config's theta (1.0) and the given lambda: the end of the run's test_cache, to rounding.
    summary = json.loads(lm_run.summary.read_text())
    assert block["cache"][1] == pytest.approx(summary["test_cache"], abs=0.006)
    assert main(["eval", str(path), "--split", "valid", "--cache", "40", "--cache-search"]) == 0
    out = capsys.readouterr().out
    assert "cache search on valid" in out and "best on valid: window 40, theta" in out
    assert main(["eval", str(path)]) == 0                                  # plain, at test_batch_size
    records = read_evaluations(path)
    assert [(r["method"], r["split"]) for r in records] == [
        ("plain", "test"), ("cache", "test"), ("plain", "valid"), ("cache", "valid"), ("plain", "test")]
    cache = records[1]
    assert cache["settings"] == {"window": 40, "theta": 1.0, "lambda": 0.2} and cache["batch_size"] == 1
    assert cache["ppl"] == pytest.approx(block["cache"][1], abs=0.006) and cache["checkpoint"] == "best"
    assert cache["step"] is not None and cache["rnnreg"] and cache["time"].endswith("Z")
    searched = records[3]["settings"]
    grid = {(a, b): loss for a, b, loss in searched["search"]["grid"]}
    assert records[3]["loss"] == min(grid.values()) == grid[(searched["theta"], searched["lambda"])]
    assert records[4]["batch_size"] == 2 and records[4]["settings"] == {}  # the tiny config's test_batch_size


@pytest.mark.slow
def test_eval_dynamic_and_its_search(lm_run, capsys):
    assert main(["eval", str(lm_run.path), "--dynamic", "--dynamic-lr", "1e-4", "--dynamic-bptt", "4"]) == 0
    block = _block(capsys.readouterr().out)
    assert set(block) == {"plain", "dynamic"} and block["dynamic"][0] != block["plain"][0]
    assert main(["eval", str(lm_run.path), "--split", "valid", "--dynamic-search"]) == 0
    out = capsys.readouterr().out
    assert "dynamic search on valid" in out and "best on valid: lr" in out
    last = read_evaluations(lm_run.path)[-1]
    assert last["method"] == "dynamic" and last["split"] == "valid" and len(last["settings"]["search"]["grid"]) == 24


@pytest.mark.slow
def test_the_report_sets_a_cache_reference_beside_the_cache_number(lm_run, tmp_path, capsys):
    """The run's config gains a [cache] reference: its line carries test_cache, not the plain test."""
    copy = tmp_path / "run"
    copy.mkdir()
    summary = json.loads(lm_run.summary.read_text())
    (copy / "summary.json").write_text(json.dumps(summary))
    (copy / "config.toml").write_text(lm_run.config.read_text() + '\n[[expect.references]]\nsource = "Cache paper"\n'
                                      'valid = 20.0\ntest = 21.0\nmethod = "cache"\n')
    assert main(["report", str(copy)]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if "Cache paper [cache]" in row).split()
    assert line[:4] == [f"{summary['valid_cache']:.2f}", f"{summary['test_cache']:.2f}", "20.00", "21.00"]


def _fake_lm_run(tmp: Path) -> str:
    run = RunDir(tmp / "runs" / "zaremba-small")
    run.path.mkdir(parents=True)
    run.write_config(load_config("zaremba-small"))
    return str(run.path)


def _snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("extra, says", [
    (["--cache", "0"], "--cache (the window) must be >= 1, got 0"),
    (["--cache", "50", "--cache-lambda", "1.5"], "--cache-lambda must be in [0, 1], got 1.5"),
    (["--cache", "50", "--cache-lambda", "nan"], "--cache-lambda must be in [0, 1]"),
    (["--cache", "50", "--cache-theta", "-1"], "--cache-theta must be >= 0"),
    (["--cache-theta", "0.5"], "--cache-theta needs --cache WINDOW"),
    (["--cache-search"], "--cache-search needs --cache WINDOW"),
    (["--cache", "50", "--mc-samples", "5"], "--cache and --mc-samples are two different evaluations"),
    (["--dynamic", "--mc-samples", "5"], "--dynamic and --mc-samples are two different evaluations"),
    (["--cache", "50", "--batch-size", "10"], "--cache reads the split as one stream of text"),
    (["--dynamic-lr", "1e-4"], "--dynamic-lr needs --dynamic"),
    (["--dynamic", "--dynamic-lr", "0"], "--dynamic-lr must be > 0, got 0.0"),
    (["--dynamic", "--dynamic-decay", "-1"], "--dynamic-decay must be >= 0"),
    (["--dynamic-search", "--dynamic-bptt", "0"], "--dynamic-bptt must be >= 1"),
    (["--cache", "50", "--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["--cache", "50", "--cache-search", "--cache-lambda", "0.1"],
     "--cache-search chooses --cache-theta and --cache-lambda itself; drop --cache-lambda"),
    (["--dynamic-search", "--dynamic-lr", "1e-4"],
     "--dynamic-search chooses --dynamic-lr and --dynamic-decay itself; drop --dynamic-lr"),
])
def test_bad_combinations_are_one_line_exit_2_and_nothing_written(extra, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["eval", _fake_lm_run(tmp_path), *extra]
    before = _snapshot(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0] and err[0].startswith("rnnreg eval: error: "), err
    assert _snapshot(tmp_path) == before


def test_a_task_run_has_no_cache_and_an_unreadable_record_file_is_refused(tmp_path, capsys):
    run = trained_adding_run(tmp_path / "runs")
    before = _snapshot(tmp_path)
    assert main(["eval", str(run.path), "--cache", "50"]) == 2
    assert "--cache is for language models; " in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
    (run.path / "evaluations.json").write_text('{"not": "a list"}')
    assert main(["eval", str(run.path)]) == 2
    assert "evaluations.json is not a list of evaluation records" in capsys.readouterr().err
    assert json.loads((run.path / "evaluations.json").read_text()) == {"not": "a list"}


@pytest.mark.slow
def test_a_run_can_be_evaluated_while_it_trains(lm_run, capsys):
    """Training holds the run's lock for the whole run; eval neither takes it nor writes the
    trainer's files (only evaluations.json, its own)."""
    from rnnreg.runs.lock import RunLock

    kept = {name: (lm_run.path / name).read_bytes() for name in ("summary.json", "metrics.jsonl", "config.toml")}
    count = len(read_evaluations(lm_run.path))
    with RunLock(lm_run.path):
        assert main(["eval", str(lm_run.path), "--cache", "40"]) == 0
    assert len(read_evaluations(lm_run.path)) == count + 2                   # plain and cache
    assert {name: (lm_run.path / name).read_bytes() for name in kept} == kept
