"""The command line: the demo runs and reports, bad arguments exit 2 with a message."""

import subprocess
import sys

from rnnreg.cli import main


def test_demo_runs_and_reports(capsys):
    assert main(["demo", "--steps", "3", "--seq-len", "10"]) == 0
    out = capsys.readouterr().out
    assert "step     3" in out and "final valid mse" in out


def test_bad_arguments_exit_2(capsys):
    assert main(["demo", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "rnnreg", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "demo" in res.stdout and "kernels" in res.stdout
