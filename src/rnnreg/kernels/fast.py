"""The fast twin of ``kernels/reference.py``: a C++ CPU kernel with a hand-written backward.

The kernel (``csrc/``: ``lstm.cpp``, ``gru.cpp``, ``rnn.cpp``, ``masks.cpp`` and their shared
headers) is compiled by ``torch.utils.cpp_extension.load`` on first use and cached in torch's
extension directory (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), in a folder
of its own per environment (:func:`build_directory`).
``fast_available()`` reports whether that worked; when it did not, callers use the reference
recurrences instead.

``lstm_fast``, ``gru_fast`` and ``rnn_fast`` take exactly the arguments of ``lstm_reference``,
``gru_reference`` and ``rnn_reference`` and return the same results, with gradients for the input,
the initial states, the weights, the biases and the peepholes (masks and zoneout weights get none).
CPU float32 / float64 only; other devices raise, and the caller falls back to the reference.

Under ``torch.compile`` each of these calls runs eagerly (``torch.compiler.disable``: a graph
break around the op) because the ops are not yet registered with fake kernels, so tracing them
would fail; compiled code around them is unaffected.
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
from torch import Tensor
from torch.autograd.function import once_differentiable

from .precision import outside_cpu_autocast

__all__ = ["build_directory", "fast_available", "lstm_fast", "gru_fast", "rnn_fast"]

logger = logging.getLogger(__name__)

_CSRC = Path(__file__).resolve().parent.parent / "csrc"  # one .cpp per cell, plus masks.cpp
_EXT_NAME = "rnnreg_stepwise"
_lock = threading.Lock()
_state: dict[str, bool] = {}

# Bits of the backward ops' `needs` argument (csrc/recurrence.h, enum Need).
_X, _H0, _C0, _WIH, _WHH, _BIH, _BHH, _PEEP = 1, 2, 4, 8, 16, 32, 64, 128

_ACTIVATIONS = {"tanh": 0, "relu": 1, "trec": 2}


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
        # no -march=native: the build cache may be shared between machines (AVX2 is picked at
        # run time inside the kernel). -fopenmp: at::parallel_for is OpenMP-based in its headers.
        extra_cflags=["-O3", "-fno-trapping-math", "-fno-math-errno", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=False,
    )


@torch.compiler.disable  # reads the file system (the build): never traced
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


def _ops():
    if not fast_available():
        raise RuntimeError("the rnnreg fast stepwise kernel could not be built (see the log)")
    return torch.ops.rnnreg_fast


# ------------------------------------------------------------------------------------------------
# Argument preparation


def _check(x: Tensor, states: tuple[Tensor, ...], w_ih: Tensor, w_hh: Tensor, gates: int,
           vectors: tuple[Tensor | None, ...] = (), peep: Tensor | None = None) -> None:
    """Device, dtype and shapes; the C++ side trusts them."""
    for t in (x, *states, w_ih, w_hh, *vectors, peep):
        if t is not None and t.device.type != "cpu":
            raise RuntimeError(f"rnnreg fast kernel: CPU tensors only, got {t.device}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"rnnreg fast kernel: float32 or float64 only, got {x.dtype}")
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(f"rnnreg fast kernel: x must be (T, B, I) with T > 0, got {tuple(x.shape)}")
    H = w_hh.shape[-1]
    G = gates * H
    if tuple(w_hh.shape) != (G, H) or tuple(w_ih.shape) != (G, x.shape[2]):
        raise ValueError(f"rnnreg fast kernel: weights must be {(G, x.shape[2])} and {(G, H)}, "
                         f"got {tuple(w_ih.shape)} and {tuple(w_hh.shape)}")
    for s in states:
        if tuple(s.shape) != (x.shape[1], H):
            raise ValueError(f"rnnreg fast kernel: initial states must be {(x.shape[1], H)}, "
                             f"got {tuple(s.shape)}")
    for v in vectors:
        if v is not None and tuple(v.shape) != (G,):
            raise ValueError(f"rnnreg fast kernel: biases must be ({G},), got {tuple(v.shape)}")
    if peep is not None and tuple(peep.shape) != (3 * H,):
        raise ValueError(f"rnnreg fast kernel: peep must be ({3 * H},), got {tuple(peep.shape)}")


def _dense(t: Tensor | None, like: Tensor) -> Tensor | None:
    """Contiguous, in like's dtype (parameters, states, inputs)."""
    if t is None:
        return None
    return t.to(dtype=like.dtype).contiguous()


def _mask(t: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
    """A mask / zoneout weight as a dense tensor of the given shape (broadcast if needed)."""
    if t is None:
        return None
    t = t.detach()
    if t.dtype != like.dtype:
        t = t.to(like.dtype)
    return t.expand(shape).contiguous()


def _grad(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _needs_bits(ctx, bits: tuple[int, ...]) -> int:
    return sum(b for b, n in zip(bits, ctx.needs_input_grad) if n and b)


def _pick(t: Tensor, wanted: bool) -> Tensor | None:
    return t if wanted else None


# ------------------------------------------------------------------------------------------------
# LSTM


class _LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rec_mask, keep_h, keep_c, upd_mask):
        hs, cs, gates, cn, hin = torch.ops.rnnreg_fast.lstm_fwd(
            x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep, rec_mask, keep_h, keep_c, upd_mask, True)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, peep, rec_mask, keep_h, keep_c, upd_mask,
                              hs, cs, gates, cn, hin)
        return hs, cs

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs, dcs):
        if dhs is None and dcs is None:
            return (None,) * 12
        (x, h0, c0, w_ih, w_hh, peep, rec_mask, keep_h, keep_c, upd_mask,
         hs, cs, gates, cn, hin) = ctx.saved_tensors
        n = ctx.needs_input_grad
        needs = _needs_bits(ctx, (_X, _H0, _C0, _WIH, _WHH, _BIH, _BHH, _PEEP))
        dx, dh0, dc0, dw_ih, dw_hh, db, dpeep = torch.ops.rnnreg_fast.lstm_bwd(
            _grad(dhs), _grad(dcs), x, h0, c0, w_ih, w_hh, peep, rec_mask, keep_h, keep_c,
            upd_mask, hs, cs, gates, cn, hin, needs)
        db_ih = db if n[5] else None
        db_hh = (db.clone() if n[5] else db) if n[6] else None
        return (_pick(dx, n[0]), _pick(dh0, n[1]), _pick(dc0, n[2]), _pick(dw_ih, n[3]),
                _pick(dw_hh, n[4]), db_ih, db_hh, _pick(dpeep, n[7] and peep is not None),
                None, None, None, None)


@torch.compiler.disable
@outside_cpu_autocast()
def lstm_fast(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None, b_hh: Tensor | None, peep: Tensor | None = None,
              rec_mask: Tensor | None = None, keep_h: Tensor | None = None,
              keep_c: Tensor | None = None, upd_mask: Tensor | None = None
              ) -> tuple[Tensor, Tensor]:
    """Same as ``lstm_reference``: returns (h sequence (T, B, H), c sequence (T, B, H))."""
    _check(x, (h0, c0), w_ih, w_hh, 4, (b_ih, b_hh), peep)
    ops = _ops()
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    args = [_dense(t, x) for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep)]
    masks = [_mask(rec_mask, (B, H), x), _mask(keep_h, (T, B, H), x),
             _mask(keep_c, (T, B, H), x), _mask(upd_mask, (T, B, H), x)]
    if _needs_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep):
        return _LSTMFunction.apply(*args, *masks)
    hs, cs = ops.lstm_fwd(*args, *masks, False)
    return hs, cs


# ------------------------------------------------------------------------------------------------
# GRU


class _GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, upd_mask):
        hs, gates, hn, hin = torch.ops.rnnreg_fast.gru_fwd(
            x, h0, w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, upd_mask, True)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, w_ih, w_hh, rec_mask, keep_h, upd_mask, hs, gates, hn, hin)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs):
        if dhs is None:
            return (None,) * 9
        x, h0, w_ih, w_hh, rec_mask, keep_h, upd_mask, hs, gates, hn, hin = ctx.saved_tensors
        n = ctx.needs_input_grad
        needs = _needs_bits(ctx, (_X, _H0, _WIH, _WHH, _BIH, _BHH))
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = torch.ops.rnnreg_fast.gru_bwd(
            _grad(dhs), x, h0, w_ih, w_hh, rec_mask, keep_h, upd_mask, hs, gates, hn, hin, needs)
        return (_pick(dx, n[0]), _pick(dh0, n[1]), _pick(dw_ih, n[2]), _pick(dw_hh, n[3]),
                _pick(db_ih, n[4]), _pick(db_hh, n[5]), None, None, None)


@torch.compiler.disable
@outside_cpu_autocast(cast_outputs=False)  # as torch.gru: float32 under CPU autocast
def gru_fast(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
             b_hh: Tensor | None, rec_mask: Tensor | None = None,
             keep_h: Tensor | None = None, upd_mask: Tensor | None = None) -> Tensor:
    """Same as ``gru_reference``: returns the h sequence (T, B, H)."""
    _check(x, (h0,), w_ih, w_hh, 3, (b_ih, b_hh))
    ops = _ops()
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    args = [_dense(t, x) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    masks = [_mask(rec_mask, (B, H), x), _mask(keep_h, (T, B, H), x),
             _mask(upd_mask, (T, B, H), x)]
    if _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):
        return _GRUFunction.apply(*args, *masks)
    return ops.gru_fwd(*args, *masks, False)[0]


# ------------------------------------------------------------------------------------------------
# Elman RNN


class _RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, act, threshold):
        hs, deriv, hin = torch.ops.rnnreg_fast.rnn_fwd(
            x, h0, w_ih, w_hh, b_ih, b_hh, rec_mask, keep_h, act, threshold, True)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, w_ih, w_hh, rec_mask, keep_h, hs, deriv, hin)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs):
        if dhs is None:
            return (None,) * 10
        x, h0, w_ih, w_hh, rec_mask, keep_h, hs, deriv, hin = ctx.saved_tensors
        n = ctx.needs_input_grad
        needs = _needs_bits(ctx, (_X, _H0, _WIH, _WHH, _BIH, _BHH))
        dx, dh0, dw_ih, dw_hh, db, _ = torch.ops.rnnreg_fast.rnn_bwd(
            _grad(dhs), x, h0, w_ih, w_hh, rec_mask, keep_h, hs, deriv, hin, needs)
        db_ih = db if n[4] else None
        db_hh = (db.clone() if n[4] else db) if n[5] else None
        return (_pick(dx, n[0]), _pick(dh0, n[1]), _pick(dw_ih, n[2]), _pick(dw_hh, n[3]),
                db_ih, db_hh, None, None, None, None)


@torch.compiler.disable
@outside_cpu_autocast()
def rnn_fast(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
             b_hh: Tensor | None, rec_mask: Tensor | None = None,
             keep_h: Tensor | None = None, nonlinearity: str = "tanh",
             threshold: float = 1.0) -> Tensor:
    """Same as ``rnn_reference``: returns the h sequence (T, B, H); nonlinearity tanh/relu/trec."""
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"nonlinearity must be one of {sorted(_ACTIVATIONS)}, "
                         f"got {nonlinearity!r}")
    _check(x, (h0,), w_ih, w_hh, 1, (b_ih, b_hh))
    ops = _ops()
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    act = _ACTIVATIONS[nonlinearity]
    args = [_dense(t, x) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    masks = [_mask(rec_mask, (B, H), x), _mask(keep_h, (T, B, H), x)]
    if _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):
        return _RNNFunction.apply(*args, *masks, act, float(threshold))
    return ops.rnn_fwd(*args, *masks, act, float(threshold), False)[0]


# ------------------------------------------------------------------------------------------------
# Masks (csrc/masks.cpp). Each draws ONE 64-bit seed from torch's default CPU generator, so
# torch.manual_seed reproduces them; the mask is then a pure function of the seed and the index.


def _seed() -> int:
    return int(torch.randint(-2**63, 2**63 - 1, (1,), dtype=torch.int64).item())


@torch.compiler.disable
def fast_dropout_mask(shape: tuple[int, ...] | torch.Size, p: float, like: Tensor) -> Tensor:
    """Entries 0 with probability p, else 1/(1-p), in like's dtype (CPU float32 / float64)."""
    return _ops().dropout_mask(list(shape), float(p), _seed(), like.dtype)


@torch.compiler.disable
def fast_keep_mask(prob: Tensor) -> Tensor:
    """0/1 in prob's dtype and shape, 1 with the per-element probability prob (CPU float32/64)."""
    return _ops().keep_mask(prob.detach(), _seed())


@torch.compiler.disable
def fast_keep_mask_const(shape: tuple[int, ...] | torch.Size, prob: float, like: Tensor) -> Tensor:
    """0/1 in like's dtype, 1 with probability prob; equal to fast_keep_mask(full(shape, prob))
    for the same generator state."""
    return _ops().keep_mask_const(list(shape), float(prob), _seed(), like.dtype)
