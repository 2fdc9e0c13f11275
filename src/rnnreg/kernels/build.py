"""Building and loading the C++ stepwise kernel (``csrc/``).

The kernel (``lstm.cpp``, ``gru.cpp``, ``rnn.cpp``, ``masks.cpp``, ``noise.cpp``, the test hooks of
``probes.cpp`` and their shared headers) is compiled by ``torch.utils.cpp_extension.load`` on
first use and cached in torch's extension directory (``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``), in a folder of its own per environment (:func:`build_directory`).
``fast_available()`` reports whether that worked; when it did not, callers use the reference
recurrences instead. The compiled ops live under ``torch.ops.rnnreg_fast``; ``kernels/fast_ops.py``
wraps them as the registered ``rnnreg::`` ops.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
from pathlib import Path

import torch

__all__ = ["build_directory", "fast_available", "native_ops"]

logger = logging.getLogger(__name__)

_CSRC = Path(__file__).resolve().parent.parent / "csrc"  # one .cpp per cell, masks, noise, probes
_EXT_NAME = "rnnreg_stepwise"
_lock = threading.Lock()
_state: dict[str, bool] = {}


def build_directory(root: str | os.PathLike | None = None, *, prefix: str | None = None,
                    torch_version: str | None = None, python_tag: str | None = None) -> Path:
    """Where this environment builds the extension: ``root`` (default ``TORCH_EXTENSIONS_DIR``, else
    torch's ``~/.cache/torch_extensions``) / ``rnnreg_stepwise`` / a key of the torch version, the
    Python version and ABI, and a hash of the interpreter prefix.

    Why a key: torch's own folder is shared by every virtualenv of a Python version, so two
    environments (or two torch versions) rewrote each other's ``build.ninja`` and each start
    rebuilt the extension (17-21 s instead of 0.1 s). Keyed, each environment builds once.
    The arguments other than ``root`` exist for tests; they default to this interpreter's."""
    if root is None:
        root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None:
        from torch.utils.cpp_extension import get_default_build_root

        root = get_default_build_root()
    prefix = os.path.realpath(sys.prefix if prefix is None else prefix)
    torch_version = torch.__version__ if torch_version is None else torch_version
    if python_tag is None:
        python_tag = f"cp{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    digest = hashlib.sha256(prefix.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    key = re.sub(r"[^A-Za-z0-9._-]", "_", f"torch{torch_version}-{python_tag}-{digest}")
    return Path(root) / _EXT_NAME / key


def _build() -> None:
    from torch.utils.cpp_extension import load

    where = build_directory()
    where.mkdir(parents=True, exist_ok=True)   # torch creates only its default folder itself
    load(
        name=_EXT_NAME,
        build_directory=str(where),
        sources=sorted(str(p) for p in _CSRC.glob("*.cpp")),  # sorted: a stable build order
        # -fno-trapping-math lets the compiler if-convert (and so vectorize) the pointwise loops;
        # no -march=native: the build cache may be shared between machines (the AVX2 or AVX-512
        # clone is picked at run time inside the kernel, csrc/dispatch.h). -fopenmp:
        # at::parallel_for is OpenMP-based in its headers.
        extra_cflags=["-O3", "-fno-trapping-math", "-fno-math-errno", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=False,
    )


@torch.compiler.assume_constant_result  # traced: called once, its answer is a constant
def fast_available() -> bool:
    """Build (first call only) and load the C++ kernel; False, with a logged warning, if that fails."""
    ok = _state.get("ok")
    if ok is not None:
        return ok
    with _lock:
        if "ok" not in _state:
            try:
                if not hasattr(torch.ops.rnnreg_fast, "lstm_fwd"):
                    _build()
                torch.ops.rnnreg_fast.lstm_fwd  # noqa: B018 - raises if registration failed
                _state["ok"] = True
            except Exception as exc:  # noqa: BLE001 - any build or load failure means "not available"
                logger.warning("rnnreg fast stepwise kernel unavailable, using the reference "
                               "recurrences: %s: %s", type(exc).__name__, exc)
                _state["ok"] = False
    return _state["ok"]


def native_ops():
    """``torch.ops.rnnreg_fast``, built first if need be; RuntimeError if it cannot be."""
    if not fast_available():
        raise RuntimeError("the rnnreg fast stepwise kernel could not be built (see the log)")
    return torch.ops.rnnreg_fast
