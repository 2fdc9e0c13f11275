"""The language-model CLI: train / eval / generate / plot / report / presets, clear errors, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnreg.cli import main
from rnnreg.runs.metrics import read_metrics

from lm_fixtures import TINY, write_corpus

pytestmark = pytest.mark.slow  # trains models or starts processes


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def tiny_args(corpus_dir, out, *extra):
    return ["awd-lstm-ptb", f"data.dataset={corpus_dir}", f"train.out_dir={out}", "train.epochs=1", *TINY, *extra]


@pytest.fixture(scope="module")
def trained_run(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--quiet", *tiny_args(corpus_dir, out)]) == 0
    return out / "awd-lstm-ptb"


def test_train_prints_numbers_sample_and_next_commands(corpus_dir, tmp_path, capsys):
    assert main(["train", "--quiet", *tiny_args(corpus_dir, tmp_path, "train.max_steps=5")]) == 0
    out = capsys.readouterr().out
    assert "finished: valid ppl" in out and "test ppl" in out and "--- sample" in out
    assert f"rnnreg plot {tmp_path / 'awd-lstm-ptb'}" in out


def test_second_run_gets_a_new_directory(corpus_dir, tmp_path):
    for _ in range(2):
        assert main(["train", "--quiet", *tiny_args(corpus_dir, tmp_path, "train.max_steps=2")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["awd-lstm-ptb", "awd-lstm-ptb-2"]


def test_eval_generate_plot_report(trained_run, capsys, tmp_path):
    assert main(["eval", str(trained_run)]) == 0
    assert "test: loss" in capsys.readouterr().out
    assert main(["eval", str(trained_run), "--split", "valid", "--mc-samples", "3"]) == 0
    assert "MC dropout, 3 samples" in capsys.readouterr().out
    assert main(["generate", str(trained_run), "--length", "12", "--seed", "3", "--top-k", "5"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", str(trained_run), "--length", "12", "--seed", "3", "--top-k", "5"]) == 0
    assert capsys.readouterr().out == first and first.strip()
    assert main(["plot", str(trained_run), "--out", str(tmp_path / "plots")]) == 0
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"curves.png", "lr.png", "hidden_norms.png"} <= names
    assert main(["report", str(trained_run.parent)]) == 0
    report = capsys.readouterr().out
    assert "awd-lstm-ptb" in report and "61.20" in report and "58.80" in report


def test_presets_list_and_show(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "zaremba-medium" in out and "86.2 / 82.7" in out
    assert main(["presets", "show", "awd-lstm-ptb"]) == 0
    assert 'weight_p = 0.5' in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "eval", "generate", "presets", "plot", "report", "kernels"])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: rnnreg" in capsys.readouterr().out


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    empty = write_corpus(tmp_path / "empty")
    (empty / "valid.txt").write_text("")
    binary = write_corpus(tmp_path / "binary")
    (binary / "train.txt").write_bytes(b"abc\x00\x01\x02 data" * 10)
    latin = write_corpus(tmp_path / "latin")
    (latin / "test.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    return {
        "unknown preset": (["awd-lstm-pt"], "did you mean 'awd-lstm-ptb'"),
        "mistyped key": (["quickstart", "model.hiden_size=3"], "did you mean 'model.hidden_size'"),
        "out of range": (["quickstart", "model.output_p=1.5"], "model.output_p must be in [0, 1)"),
        "missing folder": (["quickstart", f"data.dataset={tmp_path / 'nowhere'}"], "nowhere"),
        "empty file": (["quickstart", f"data.dataset={empty}"], "valid.txt"),
        "binary file": (["quickstart", f"data.dataset={binary}"], "train.txt"),
        "not utf-8": (["quickstart", f"data.dataset={latin}"], "UTF-8"),
    }


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "runs"
    for name, (args, message) in _bad_inputs(tmp_path).items():
        code = main(["train", *args, f"train.out_dir={out_dir}"])
        err = capsys.readouterr().err
        assert code == 2, name
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (name, err)
    assert not out_dir.exists()


def test_eval_refuses_a_different_vocabulary(trained_run, tmp_path, capsys):
    other = write_corpus(tmp_path / "other", seed=2)
    (other / "train.txt").write_text("entirely different words in this corpus\n" * 40)
    assert main(["eval", str(trained_run), f"data.dataset={other}"]) == 2
    assert "does not match" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnreg", "train", "--quiet", *args]


def _wait_for_step(metrics: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if metrics.exists():
            steps = [r.get("step", 0) for r in read_metrics(metrics) if r["kind"] == "step"]
            if steps and max(steps) >= step:
                return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def _stable(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")}
            for r in read_metrics(path) if r["kind"] != "event"]


def test_sigterm_checkpoints_and_exits_cleanly(corpus_dir, tmp_path):
    args = tiny_args(corpus_dir, tmp_path, "train.epochs=50")
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "awd-lstm-ptb"
    _wait_for_step(run / "metrics.jsonl", 20, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped:" in out and f"rnnreg train --resume {run}" in out
    assert (run / "last.pt").is_file()
    assert '"status": "stopped"' in (run / "summary.json").read_text()
