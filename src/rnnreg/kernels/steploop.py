"""The step loop: the reference recurrences (``kernels/reference.py``) on any device, with a
hand-written backward and one fused pointwise pass per step.

``lstm_steploop``, ``gru_steploop`` and ``rnn_steploop`` take exactly the arguments of
``lstm_reference``, ``gru_reference`` and ``rnn_reference`` and return the same results, with
gradients for the input, the initial states, the weights, the biases and the peepholes (masks and
zoneout weights get none; the backward is hand-written, so a second-order gradient raises:
refuse_twice.py).
Per step the forward runs one GEMM and one pointwise pass, the backward one pointwise pass and one
GEMM; everything else is a single GEMM or reduction over all steps (``steploop_lstm.py``,
``steploop_gru.py``, ``steploop_rnn.py``). The scheme is csrc/recurrence.h's, on any device.

The pointwise passes come in two implementations with one interface: Triton kernels
(``pointwise_triton.py``, one launch per pass) where :func:`triton_available`, else plain torch ops
(``steploop_torch.py``). rnnreg imports Triton and its kernels only then, never at its own import.
On CUDA the forward time loop can also replay as a captured CUDA graph (opt-in:
``steploop_graphs.use_cuda_graphs``, or ``RNNREG_CUDA_GRAPHS=1``; see ``steploop_graphs.py``).

Dtypes: float64, float32, bfloat16, float16. Everything is cast to one storage dtype (x's, or
autocast's for float32 inputs under autocast on x's device, which is what torch.nn's RNNs return
on the CPU; on CUDA, PyTorch's cuDNN autocast wrapper, aten/src/ATen/cudnn/AutocastRNN.cpp, casts
them to float16 whatever autocast's dtype); the pointwise math runs in float32 for the half types, and the outputs come back in the
storage dtype. Like fast.py, each call runs eagerly under ``torch.compile`` (a graph break).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
from types import ModuleType

import torch
from torch import Tensor

from .shapes import check_shapes
from .steploop_common import no_autocast
from .steploop_gru import GRUStepLoop, gru_forward
from .steploop_lstm import LSTMStepLoop, lstm_forward
from .steploop_rnn import RNNStepLoop, rnn_forward
from .steploop_torch import acc_dtype

__all__ = ["lstm_steploop", "gru_steploop", "rnn_steploop", "triton_available", "pointwise_for",
           "pointwise_backend"]

logger = logging.getLogger(__name__)
_MODULES = {"triton": "pointwise_triton", "torch": "steploop_torch"}
_forced: dict[str, str] = {}
NONLINEARITIES = ("tanh", "relu", "trec")


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a missing or broken install both mean "no"
        logger.info("Triton unavailable, the step loop uses torch pointwise ops: %s", exc)
        return False
    return True


def triton_available(t: Tensor) -> bool:
    """Whether the Triton pointwise kernels can run on ``t``'s device: a CUDA tensor, or a CPU
    tensor under Triton's interpreter (``TRITON_INTERPRET=1``, for tests), and Triton importable."""
    interpreted = t.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
    return (t.device.type == "cuda" or interpreted) and _triton_importable()


def pointwise_for(t: Tensor) -> ModuleType:
    """The pointwise module the step loop uses for ``t``: forced by :func:`pointwise_backend`,
    else Triton where available, else torch ops."""
    name = _forced.get("name") or ("triton" if triton_available(t) else "torch")
    return importlib.import_module(f"{__package__}.{_MODULES[name]}")


@contextlib.contextmanager
def pointwise_backend(name: str | None):
    """Force the pointwise implementation ('triton', 'torch'; None: automatic) inside the block,
    process-wide: for benchmarks and tests, not thread-safe."""
    if name is not None and name not in _MODULES:
        raise ValueError(f"pointwise backend must be one of {sorted(_MODULES)}, got {name!r}")
    before = _forced.pop("name", None)
    if name is not None:
        _forced["name"] = name
    try:
        yield
    finally:
        _forced.pop("name", None)
        if before is not None:
            _forced["name"] = before


def run_dtype(x: Tensor) -> torch.dtype:
    """The storage dtype: autocast's on x's device unless x is float64, else x's."""
    device = x.device.type
    if x.dtype != torch.float64 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _check(x: Tensor, states: tuple[Tensor, ...], w_ih: Tensor, w_hh: Tensor, gates: int,
           peep: Tensor | None = None) -> None:
    check_shapes("step loop", x, states, w_ih, w_hh, gates, peep=peep)
    if not x.is_floating_point():
        raise TypeError(f"step loop: floating-point inputs only, got {x.dtype}")


def _dense(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Parameters, states, inputs: contiguous, in the storage dtype (a differentiable cast)."""
    return None if t is None else t.to(dtype).contiguous()


def _mask(t: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor | None:
    """A mask or zoneout weight dense in the compute dtype (broadcast to ``shape`` if needed)."""
    return None if t is None else t.detach().to(acc_dtype(dtype)).expand(shape).contiguous()


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


@torch.compiler.disable
def lstm_steploop(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                  b_ih: Tensor | None, b_hh: Tensor | None, peep: Tensor | None = None,
                  rec_mask: Tensor | None = None, keep_h: Tensor | None = None,
                  keep_c: Tensor | None = None, upd_mask: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
    """Same as ``lstm_reference``: returns (h sequence (T, B, H), c sequence (T, B, H))."""
    _check(x, (h0, c0), w_ih, w_hh, 4, peep)
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    dt = run_dtype(x)
    args = [_dense(t, dt) for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep)]
    masks = [_mask(rec_mask, (B, H), dt), _mask(keep_h, (T, B, H), dt),
             _mask(keep_c, (T, B, H), dt), _mask(upd_mask, (T, B, H), dt)]
    with no_autocast(x.device.type):
        if _needs_grad(*args):
            return LSTMStepLoop.apply(pointwise_for(x), *args, *masks)
        with torch.no_grad():
            return lstm_forward(pointwise_for(x), *args, *masks, train=False)[:2]


@torch.compiler.disable
def gru_steploop(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                 b_hh: Tensor | None, rec_mask: Tensor | None = None,
                 keep_h: Tensor | None = None, upd_mask: Tensor | None = None) -> Tensor:
    """Same as ``gru_reference``: returns the h sequence (T, B, H)."""
    _check(x, (h0,), w_ih, w_hh, 3)
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    dt = run_dtype(x)
    args = [_dense(t, dt) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    masks = [_mask(rec_mask, (B, H), dt), _mask(keep_h, (T, B, H), dt),
             _mask(upd_mask, (T, B, H), dt)]
    with no_autocast(x.device.type):
        if _needs_grad(*args):
            return GRUStepLoop.apply(pointwise_for(x), *args, *masks)
        with torch.no_grad():
            return gru_forward(pointwise_for(x), *args, *masks, train=False)[0]


@torch.compiler.disable
def rnn_steploop(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                 b_hh: Tensor | None, rec_mask: Tensor | None = None,
                 keep_h: Tensor | None = None, nonlinearity: str = "tanh",
                 threshold: float = 1.0) -> Tensor:
    """Same as ``rnn_reference``: returns the h sequence (T, B, H); nonlinearity tanh/relu/trec."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    _check(x, (h0,), w_ih, w_hh, 1)
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    dt = run_dtype(x)
    args = [_dense(t, dt) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    masks = [_mask(rec_mask, (B, H), dt), _mask(keep_h, (T, B, H), dt)]
    with no_autocast(x.device.type):
        if _needs_grad(*args):
            return RNNStepLoop.apply(pointwise_for(x), *args, *masks, nonlinearity,
                                     float(threshold))
        with torch.no_grad():
            return rnn_forward(pointwise_for(x), *args, *masks, nonlinearity, float(threshold),
                               train=False)[0]
