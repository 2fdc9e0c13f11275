"""Where the C++ extension is built: one folder per environment, so that several virtualenvs (or
torch versions) sharing ``~/.cache/torch_extensions`` each build once instead of rewriting each
other's ``build.ninja`` at every start. Nothing here compiles anything."""

from __future__ import annotations

import sys
from pathlib import Path

import torch.utils.cpp_extension

from rnnreg.kernels import build
from rnnreg.kernels.build import build_directory


def test_two_prefixes_give_two_directories(tmp_path):
    a = build_directory(tmp_path, prefix="/envs/a")
    b = build_directory(tmp_path, prefix="/envs/b")
    assert a != b
    assert a == build_directory(tmp_path, prefix="/envs/a")       # stable: built once, found again
    assert a.parent == b.parent == tmp_path / "rnnreg_stepwise"


def test_torch_and_python_versions_are_part_of_the_key(tmp_path):
    base = build_directory(tmp_path, prefix="/env", torch_version="2.13.0+cpu", python_tag="cp311")
    assert base != build_directory(tmp_path, prefix="/env", torch_version="2.12.0+cpu", python_tag="cp311")
    assert base != build_directory(tmp_path, prefix="/env", torch_version="2.13.0+cpu", python_tag="cp312")
    assert base != build_directory(tmp_path, prefix="/env", torch_version="2.13.0+cu124", python_tag="cp311")
    assert "2.13.0" in base.name and "cp311" in base.name


def test_defaults_are_this_interpreter(tmp_path):
    here = build_directory(tmp_path)
    assert here == build_directory(tmp_path, prefix=sys.prefix, torch_version=torch.__version__,
                                   python_tag=f"cp{sys.version_info.major}{sys.version_info.minor}"
                                              f"{getattr(sys, 'abiflags', '')}")
    assert here != build_directory(tmp_path, prefix=sys.prefix + "-other")


def test_torch_extensions_dir_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "exts"))
    assert build_directory().is_relative_to(tmp_path / "exts")
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    default_root = Path(torch.utils.cpp_extension.get_default_build_root())
    assert build_directory().is_relative_to(default_root)


def test_the_build_uses_that_directory(tmp_path, monkeypatch):
    """The keyed folder is what torch's loader is given (and it exists before ninja writes there)."""
    calls = []
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(torch.utils.cpp_extension, "load", lambda **kw: calls.append(kw))
    build._build()
    assert [Path(c["build_directory"]) for c in calls] == [build_directory()]
    assert build_directory().is_dir()
