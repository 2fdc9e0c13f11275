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


def test_version(capsys):
    import rnnreg

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"rnnreg {rnnreg.__version__}\n" == "rnnreg 0.1.0\n"


def _commands():
    import argparse

    from rnnreg.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"rnnreg": parser, **sub.choices}


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help_shows_every_default(command, capsys):
    """Each option (and optional positional) states its default in --help, in words where the
    real default is decided later (never argparse's "(default: None)")."""
    parser = _commands()[command]
    with pytest.raises(SystemExit) as exit:
        main(["--help"] if command == "rnnreg" else [command, "--help"])
    assert exit.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())     # argparse wraps lines: unwrap
    assert "default: None" not in shown and "default: False" not in shown
    for action in parser._actions:
        if action.dest in ("help", "version", "command") or (not action.option_strings and action.nargs is None):
            continue                                        # required positionals have no default
        assert action.help and "default" in action.help, f"{command} {action.dest}: no default in its help"
        assert " ".join(action.help.split()).split("(default")[0][:30] in shown


def test_help_names_the_actual_defaults(capsys):
    expected = {"eval": ["split to score (default: test)", "(default: best)", "(default: 0, no MC dropout)"],
                "generate": ["(default: 500)", "(default: 0.8)"],
                "plot": ["(default: RUN/plots)", "(default: 1000)"],
                "report": ["(default: runs)"], "presets": ["(default: list)"],
                "train": ["default: quickstart", "(default: start a new run)"]}
    for command, texts in expected.items():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        for text in texts:
            assert text in shown, (command, text)
