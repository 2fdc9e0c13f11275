"""The command line: bad arguments exit 2 with a message; ``python -m rnnreg`` works."""

import subprocess
import sys

import pytest

from rnnreg.cli import main


def test_bad_arguments_exit_2(capsys):
    assert main(["eval", "runs/x", "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_unknown_option_is_refused_even_among_overrides(capsys):
    try:
        main(["train", "adding-quick", "--bogus", "train.epochs=1"])
    except SystemExit as exit:
        assert exit.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.slow
def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "rnnreg", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "train" in res.stdout and "kernels" in res.stdout
