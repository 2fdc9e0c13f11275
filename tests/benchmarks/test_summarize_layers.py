"""benchmarks/summarize_layers.py: the README's Speed tables are its output, byte for byte."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python benchmarks/summarize_layers.py"


@pytest.fixture
def summarize(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import summarize_layers
    return summarize_layers


def _row(config: str, size: str, ratio: float, same_work: float | None = None, **extra) -> dict:
    return {"size": size, "config": config, "baseline": "torch.nn.LSTM", "ratio": ratio,
            "ratio_same_work": same_work, "peak_gflops": 300.0, "peak_by": "torch.mm", "threads": 2,
            "torch": "2.13.0+cpu", "malloc": "steady", "quick": False, **extra}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_file_one_value_per_cell(summarize, tmp_path, capsys):
    path = _write(tmp_path / "a.jsonl", [_row("fused", "small", 0.991), _row("fused", "awd", 1.004),
                                         _row("zoneout", "small", 1.031),
                                         _row("fused_bf16", "small", 1.0, autocast="bfloat16")])
    assert summarize.main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # Sizes nobody measured (medium) get no column; a configuration not measured at a size, no value.
    assert lines[:4] == ["| config | baseline | small | awd |", "| --- | --- | --- | --- |",
                         "| `fused` | torch.nn.LSTM | 0.99 | 1.00 |", "| `zoneout` | torch.nn.LSTM | 1.03 |  |"]
    assert lines[4] == "| `fused_bf16` | torch.nn.LSTM, bfloat16 autocast | 1.00 |  |"
    assert lines[6] == "peak 300.0 GFLOP/s (torch.mm), 2 threads, torch 2.13.0+cpu, allocator steady"


def test_several_files_give_the_range_of_their_medians(summarize, tmp_path, capsys):
    first = _write(tmp_path / "1.jsonl", [_row("awd_all", "small", 0.861, 1.231, peak_gflops=322.9)])
    second = _write(tmp_path / "2.jsonl", [_row("awd_all", "small", 0.877, 1.26, peak_gflops=326.0),
                                           _row("awd_all", "small", 0.5, quick=True)])  # a smoke line
    assert summarize.main([str(first), str(second), "--same-work"]) == 0
    out = capsys.readouterr().out
    assert "| `awd_all` | torch.nn.LSTM | 0.86–0.88 (1.23–1.26) |" in out
    assert "peak 322.9–326.0 GFLOP/s" in out
    # Without --same-work the twin's ratio stays out.
    assert summarize.main([str(first), str(second)]) == 0
    assert "(1.2" not in capsys.readouterr().out


def test_spread_brackets_the_repeats_of_every_run_in_the_cell(summarize, tmp_path, capsys):
    path = _write(tmp_path / "a.jsonl", [_row("fused", "small", 0.99, ratio_min=0.951, ratio_max=1.2),
                                         _row("fused", "small", 1.01, ratio_min=0.97, ratio_max=1.04)])
    assert summarize.main([str(path), "--spread"]) == 0
    assert "| `fused` | torch.nn.LSTM | 0.99–1.01 [0.95–1.20] |" in capsys.readouterr().out


def test_rows_follow_the_benchmarks_order(summarize, tmp_path, capsys):
    """Files list configurations in the order they ran; the table in bench_layers.py's, with any it
    no longer has (an older file's) after them."""
    path = _write(tmp_path / "a.jsonl", [_row(c, "small", 1.0) for c in ("zoneout", "retired", "fused")])
    assert summarize.main([str(path)]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()[2:5]]
    assert rows == ["`fused`", "`zoneout`", "`retired`"]


def test_filters_keep_the_asked_order(summarize, tmp_path, capsys):
    path = _write(tmp_path / "a.jsonl", [_row(c, s, 1.0) for c in ("fused", "zoneout", "peepholes")
                                         for s in ("small", "medium")])
    assert summarize.main([str(path), "--configs", "peepholes,fused", "--sizes", "medium"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| config | baseline | medium |"
    assert [line.split("|")[1].strip() for line in lines[2:4]] == ["`peepholes`", "`fused`"]


@pytest.mark.parametrize("content, args, message", [
    ("not json\n", [], "a.jsonl:1: not a JSON line"),
    ("[1, 2]\n", [], "a.jsonl:1: not a JSON object"),
    (json.dumps({"size": "small", "config": "fused"}) + "\n", [], "a.jsonl:1: 'ratio' is missing"),
    (json.dumps(_row("fused", "small", None)) + "\n", [], "a.jsonl:1: 'ratio' is missing or not a number"),
    (json.dumps(_row("fused", "huge", 1.0)) + "\n", [], "a.jsonl:1: size 'huge' is not one of"),
    (json.dumps(_row("fused", "small", 1.0)) + "\n", ["--spread"], "'ratio_min' is missing"),
    (json.dumps(_row("fused", "small", 1.0)) + "\n", ["--sizes", "AWD"], "no size 'AWD' in these files"),
    (json.dumps(_row("fused", "small", 1.0)) + "\n", ["--configs", "fused,zonout"], "no config 'zonout'"),
    ("", [], "no full-size result lines"),
])
def test_bad_input_is_one_line_and_exit_2(summarize, tmp_path, capsys, content, args, message):
    (tmp_path / "a.jsonl").write_text(content)
    assert summarize.main([str(tmp_path / "a.jsonl"), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and captured.err.count("\n") == 1


def test_max_faults_leaves_out_the_faulted_lines_and_says_so(summarize, tmp_path, capsys):
    path = _write(tmp_path / "a.jsonl", [
        _row("fused", "awd", 0.90, faults_per_iter=0.0, baseline_faults_per_iter=120_300.0),
        _row("fused", "awd", 1.01, faults_per_iter=1.0, baseline_faults_per_iter=0.0),
        _row("fused", "small", 0.99)])  # an older line, faults not counted: kept
    assert summarize.main([str(path), "--max-faults", "1000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| `fused` | torch.nn.LSTM | 0.99 | 1.01 |"
    assert lines[-1].endswith("; 1 line with more than 1000 minor page faults per iteration left out")
    assert summarize.main([str(path)]) == 0
    assert "| 0.99 | 0.90–1.01 |" in capsys.readouterr().out


def test_every_shipped_layers_results_file_summarizes(summarize, capsys):
    paths = sorted((ROOT / "benchmarks" / "results").glob("*layers*.jsonl"))
    assert paths
    for path in paths:
        assert summarize.main([str(path), "--same-work", "--spread"]) == 0, path
    capsys.readouterr()


def _readme_tables(readme: str) -> list[tuple[list[str], str]]:
    """Each `python benchmarks/summarize_layers.py ...` code block in a README, with the text that
    follows it up to the next blank line after the table's machine line."""
    text = (ROOT / readme).read_text()
    found = re.findall(r"```sh\n(" + re.escape(COMMAND) + r"[^\n]*(?:\n    [^\n]*)*)\n```\n\n"
                       r"(\|.*?\n\npeak [^\n]*)\n", text, flags=re.S)
    return [(shlex.split(command.replace("\\\n", " "))[2:], table) for command, table in found]


@pytest.mark.parametrize("readme, least", [("README.md", 3), ("benchmarks/README.md", 1)])
def test_readme_speed_tables_are_the_scripts_output(summarize, capsys, monkeypatch, readme, least):
    tables = _readme_tables(readme)
    assert len(tables) >= least  # README.md: one per machine its Speed section reports
    # Every command shown is checked: none escapes the pattern by a stray blank line or fence.
    assert len(tables) == len(re.findall(r"```\w*\n" + re.escape(COMMAND), (ROOT / readme).read_text()))
    monkeypatch.chdir(ROOT)
    for args, shown in tables:
        assert summarize.main(args) == 0, args
        assert capsys.readouterr().out.rstrip("\n") == shown, args
