"""Capture and restore every random number generator a training run draws from.

``capture_rng()`` returns plain data (tensors, ints, tuples, None) that survives
``torch.save`` / ``torch.load(weights_only=True)``, so it can sit inside a checkpoint payload
(see :mod:`rnnreg.runs.checkpoint`). ``restore_rng(state)`` puts it back, after which the next
``torch.rand`` / ``torch.cuda`` draws / ``random.random`` repeat the draws the captured run made.
rnnreg's dropout masks draw their seeds from torch's default CPU generator, so restoring it is
what makes a resumed run use the same masks as an uninterrupted one.

NumPy's global generator is not captured: rnnreg does not draw from it.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch

logger = logging.getLogger(__name__)

_MT_WORDS = 625  # CPython's Mersenne Twister state: 624 words plus the position index


def capture_rng() -> dict[str, Any]:
    """Snapshot the RNG states: ``{"torch": ByteTensor, "cuda": [ByteTensor, ...], "python": tuple}``.

    ``"cuda"`` holds one state per visible device and is present only when CUDA is available.
    ``"python"`` is ``random.getstate()`` as ``(version, tuple of 625 ints, gauss_next)``.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _python_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the RNG states captured by :func:`capture_rng` (this mutates the global RNGs).

    Tensors may live on any device (e.g. after ``map_location="cuda"``). CUDA states are
    restored for as many devices as both the snapshot and this process have; a mismatch, or
    CUDA states without CUDA, is logged as a warning because the resumed run will then differ.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from capture_rng(), got {type(state).__name__}")
    missing = {"torch", "python"} - state.keys()
    if missing:
        raise ValueError(f"state is missing RNG entries {sorted(missing)}")
    python_state = _check_python_state(state["python"])
    torch_state = _byte_tensor("state['torch']", state["torch"])
    cuda_states = [_byte_tensor(f"state['cuda'][{i}]", s) for i, s in enumerate(state.get("cuda", []))]
    torch.set_rng_state(torch_state)
    random.setstate(python_state)
    _restore_cuda(cuda_states)


def _python_state() -> tuple[int, tuple[int, ...], float | None]:
    version, internal, gauss_next = random.getstate()
    # Force builtin types so the tuple pickles as plain data whatever the interpreter returns.
    return int(version), tuple(int(w) for w in internal), None if gauss_next is None else float(gauss_next)


def _check_python_state(value: Any) -> tuple[int, tuple[int, ...], float | None]:
    ok = (isinstance(value, (tuple, list)) and len(value) == 3 and isinstance(value[0], int)
          and isinstance(value[1], (tuple, list)) and len(value[1]) == _MT_WORDS
          and all(isinstance(w, int) for w in value[1])
          and (value[2] is None or isinstance(value[2], float)))
    if not ok:
        raise ValueError("state['python'] must be (version, 625 ints, gauss_next) from random.getstate()")
    return value[0], tuple(value[1]), value[2]


def _byte_tensor(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        raise ValueError(f"{name} must be a 1-D uint8 tensor from a generator's get_state()")
    # set_rng_state only accepts CPU ByteTensors; a checkpoint loaded onto a GPU moves them.
    return value.cpu()


def _restore_cuda(states: list[torch.Tensor]) -> None:
    if not states:
        return
    if not torch.cuda.is_available():
        logger.warning("RNG state holds %d CUDA generator(s) but CUDA is not available; "
                       "they are ignored", len(states))
        return
    count = torch.cuda.device_count()
    if count != len(states):
        logger.warning("RNG state holds %d CUDA generator(s) but %d device(s) are visible; "
                       "restoring the first %d", len(states), count, min(count, len(states)))
    for device, device_state in enumerate(states[:count]):
        torch.cuda.set_rng_state(device_state, device)
