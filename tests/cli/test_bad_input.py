"""Every mistake a user can make is one line on stderr, exit code 2, and nothing written.

One case per row of README's "Bad input" table: what the user did (the command line, after
setting up whatever it needs in a fresh folder) and a fragment of the one line rnnreg answers.
Each command runs in that folder with ``train.out_dir`` inside it, and the folder's files must be
the same afterwards: no run directory, no ``config.toml``, no metrics.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import pytest
import torch

from rnnreg.cli import main
from rnnreg.config import config_to_dict, load_config
from rnnreg.runs.checkpoint import save_checkpoint
from rnnreg.runs.run_dir import RunDir

OUT = "train.out_dir=runs"


def _binary_toml(tmp: Path) -> list[str]:
    (tmp / "binary.toml").write_bytes(b"\xff\xfe\x00\x81 not text \x00")
    return ["train", "binary.toml", OUT]


def _under_a_file(tmp: Path) -> list[str]:
    (tmp / "notes.txt").write_text("a file, not a folder\n")
    return ["train", "adding-quick", "train.out_dir=notes.txt/runs"]


def _text_folder(tmp: Path) -> Path:
    folder = tmp / "my-corpus"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text("the cat sat on the mat\n" * 20)
    return folder


def _folder_and_path(tmp: Path) -> list[str]:
    folder = _text_folder(tmp)
    return ["train", "quickstart", f"data.dataset={folder}", f"data.path={folder}", OUT]


def _eval_folder_run_with_path(tmp: Path) -> list[str]:
    """A run trained on a folder of text (its checkpoint holds only what ``eval`` reads before
    the config is checked), evaluated with a data.path as if it were a named dataset."""
    folder = _text_folder(tmp)
    config = load_config("quickstart", [f"data.dataset={folder}"])
    run = RunDir(tmp / "runs" / "mine")
    run.path.mkdir(parents=True)
    run.write_config(config)
    save_checkpoint(run.best, {"format": "rnnreg-weights", "config": config_to_dict(config), "model": {}})
    return ["eval", str(run.path), f"data.path={folder}"]


def _runs_folder_missing(tmp: Path) -> list[str]:
    return ["report"]


def _report_folder_missing(tmp: Path) -> list[str]:
    return ["report", "old-runs"]


def _fake_run(tmp: Path) -> str:
    run = RunDir(tmp / "runs" / "adding-quick")
    run.path.mkdir(parents=True)
    run.write_config(load_config("adding-quick"))
    return str(run.path)


def _torchrun_uneven_batch(tmp: Path) -> list[str]:
    return ["train", "adding-quick", "data.batch_size=3", OUT]


# (id, setup returning argv, a fragment of the one stderr line, skip reason or None)
CASES: list[tuple[str, Callable[[Path], list[str]], str, str | None]] = [
    ("binary-toml", _binary_toml, "binary.toml is not a UTF-8 text file", None),
    ("cuda-without-gpu", lambda tmp: ["train", "adding-quick", "train.device=cuda", OUT],
     "torch sees no CUDA GPU", "this machine has a GPU" if torch.cuda.is_available() else None),
    ("cuda-index-bad", lambda tmp: ["train", "adding-quick", "train.device=cuda:x", OUT],
     "is not a device", None),
    ("tensorboard-missing", lambda tmp: ["train", "adding-quick", "train.tensorboard=true", OUT],
     "needs the tensorboard package",
     "tensorboard is installed" if importlib.util.find_spec("tensorboard") else None),
    ("out-dir-under-a-file", _under_a_file, "is a file, not a folder", None),
    ("out-dir-cannot-be-made", lambda tmp: ["train", "adding-quick", "train.out_dir=/proc/rnnreg-x/runs"],
     "cannot be created", None if Path("/proc").is_dir() else "needs Linux's /proc"),
    ("folder-and-path-train", _folder_and_path, "data.path is for a named dataset's files", None),
    ("folder-and-path-eval", _eval_folder_run_with_path, "data.path is for a named dataset's files", None),
    ("report-without-runs", _runs_folder_missing, "no folder 'runs'", None),
    ("report-folder-missing", _report_folder_missing, "no folder 'old-runs'", None),
    ("adam-lr-overflow", lambda tmp: ["train", "adding-quick", "optim.optimizer=adam", "optim.lr=1e38", OUT],
     "optim.lr must be at most 1e+30", None),
    ("lr-infinite", lambda tmp: ["train", "adding-quick", "optim.lr=inf", OUT], "optim.lr must be at most", None),
    ("mc-samples-negative", lambda tmp: ["eval", _fake_run(tmp), "--mc-samples", "-1"],
     "--mc-samples must be >= 0", None),
    ("torchrun-uneven-batch", _torchrun_uneven_batch, "must divide evenly over the 2 processes", None),
    ("adaptive-cutoffs-past-the-vocabulary",
     lambda tmp: ["train", "quickstart", "model.softmax=adaptive", "model.adaptive_cutoffs=[20, 1000]", OUT],
     "must stay below the vocabulary size", None),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root``: a file's size and modification time, None for a folder."""
    out: dict[str, tuple[int, int] | None] = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        out[str(path.relative_to(root))] = None if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return out


@pytest.mark.parametrize("name, setup, says, skip", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, setup, says, skip, tmp_path, monkeypatch, capsys):
    if skip:
        pytest.skip(skip)
    monkeypatch.chdir(tmp_path)
    if name.startswith("torchrun"):
        # What torchrun sets for rank 0 of 2; the refusal comes before any process group.
        for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
            monkeypatch.setenv(key, value)
    argv = setup(tmp_path)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert says in lines[0] and lines[0].startswith(f"rnnreg {argv[0]}: error: "), lines[0]
    assert _snapshot(tmp_path) == before


def test_the_readme_table_has_a_row_per_case():
    """The README's table and these cases are one list: a case added here is documented there."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Bad input", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert len(rows) == len(CASES), "one README row per case in tests/cli/test_bad_input.py"
    for _, _, says, _ in CASES:
        assert says in section, says

