"""write_text_atomic: whole files only, and the same permissions as every other file of a run."""

from __future__ import annotations

import os
import stat

import pytest

from rnnreg.runs.atomic_text import write_text_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_mode_is_opens_mode_under_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "config.toml", "a = 1\n")
        with open(tmp_path / "metrics.jsonl", "w") as f:   # how the metrics log is written
            f.write("{}\n")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "config.toml") == _mode(tmp_path / "metrics.jsonl") == 0o666 & ~umask


def test_replaces_whole_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "summary.json"
    write_text_atomic(target, "old\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "summary.json"
    write_text_atomic(target, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "bad \udcff\n")           # a lone surrogate cannot be UTF-8
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
