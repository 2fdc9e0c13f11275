"""The fast twin of ``kernels/reference.py``: the C++ CPU kernel with a hand-written backward.

``lstm_fast``, ``gru_fast`` and ``rnn_fast`` take exactly the arguments of ``lstm_reference``,
``gru_reference`` and ``rnn_reference`` and return the same results, with gradients for the input,
the initial states, the weights, the biases and the peepholes (masks and zoneout weights get none).
CPU float32 / float64 only; other devices raise, and the caller falls back to the reference.

Here the arguments are checked and put in the form the kernel trusts (dtype, contiguity, masks
expanded); the kernel runs as the registered ops of ``kernels/fast_ops.py`` (fake kernels,
autograd), so torch.compile, torch.export and torch.jit.trace see through these functions; plain
eager calls take the same kernels under a torch.autograd.Function instead (``kernels/fast_eager.py``:
the registered ops' Python dispatch cost ~100 us per layer call). The kernel is built on first use
(``kernels/build.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import fast_eager
from . import fast_ops  # noqa: F401 - registers torch.ops.rnnreg.*
from .autograd_modes import plain_autograd
from .build import build_directory, fast_available, native_ops
from .precision import outside_cpu_autocast
from .shapes import check_shapes

__all__ = ["build_directory", "fast_available", "lstm_fast", "gru_fast", "rnn_fast", "fast_dropout",
           "fast_dropout_mask", "fast_keep_mask", "fast_keep_mask_const", "fast_normal_noise"]

_ACTIVATIONS = {"tanh": 0, "relu": 1, "trec": 2}


def _ops():
    """``torch.ops.rnnreg``, after making sure the kernel behind it is built."""
    if not fast_available():
        raise RuntimeError("the rnnreg fast stepwise kernel could not be built (see the log)")
    return torch.ops.rnnreg


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
    check_shapes("rnnreg fast kernel", x, states, w_ih, w_hh, gates, vectors, peep)


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


def _needs_grad(*tensors: Tensor | None) -> bool:
    """The kernel's training flag: keep what the backward reads. Under ``torch.jit.trace`` the
    flag becomes a constant of the trace, so it must not follow the grad mode (the default trace
    check re-runs without grad and compares): always on there, so any trace can be differentiated."""
    if torch.jit.is_tracing():
        return True
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# ------------------------------------------------------------------------------------------------
# LSTM


@outside_cpu_autocast(bf16_products=True)
def lstm_fast(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None, b_hh: Tensor | None, peep: Tensor | None = None,
              rec_mask: Tensor | None = None, keep_h: Tensor | None = None,
              keep_c: Tensor | None = None, upd_mask: Tensor | None = None, *,
              bf16_products: bool = False) -> tuple[Tensor, Tensor]:
    """Same as ``lstm_reference``: returns (h sequence (T, B, H), c sequence (T, B, H)).
    ``bf16_products`` (set by the decorator under CPU bf16 autocast; ignored for float64): the
    matrix products in bf16 with float32 accumulation, as autocast's products."""
    _check(x, (h0, c0), w_ih, w_hh, 4, (b_ih, b_hh), peep)
    ops = _ops()
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    args = [_dense(t, x) for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep)]
    masks = [_mask(rec_mask, (B, H), x), _mask(keep_h, (T, B, H), x),
             _mask(keep_c, (T, B, H), x), _mask(upd_mask, (T, B, H), x)]
    train = _needs_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh, peep)  # keep what backward reads
    route = fast_eager.lstm_forward if fast_eager.eager_call(*args, *masks) else ops.lstm_forward
    hs, cs = route(*args, *masks, train, bf16_products)[:2]
    return hs, cs


# ------------------------------------------------------------------------------------------------
# GRU


# cast_outputs=False: as torch.gru, float32 under CPU autocast.
@outside_cpu_autocast(cast_outputs=False, bf16_products=True)
def gru_fast(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
             b_hh: Tensor | None, rec_mask: Tensor | None = None,
             keep_h: Tensor | None = None, upd_mask: Tensor | None = None, *,
             bf16_products: bool = False) -> Tensor:
    """Same as ``gru_reference``: returns the h sequence (T, B, H). ``bf16_products``: as
    ``lstm_fast``'s."""
    _check(x, (h0,), w_ih, w_hh, 3, (b_ih, b_hh))
    ops = _ops()
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    args = [_dense(t, x) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    masks = [_mask(rec_mask, (B, H), x), _mask(keep_h, (T, B, H), x),
             _mask(upd_mask, (T, B, H), x)]
    train = _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh)
    route = fast_eager.gru_forward if fast_eager.eager_call(*args, *masks) else ops.gru_forward
    return route(*args, *masks, train, bf16_products)[0]


# ------------------------------------------------------------------------------------------------
# Elman RNN


@outside_cpu_autocast(bf16_products=True)
def rnn_fast(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
             b_hh: Tensor | None, rec_mask: Tensor | None = None,
             keep_h: Tensor | None = None, nonlinearity: str = "tanh",
             threshold: float = 1.0, *, bf16_products: bool = False) -> Tensor:
    """Same as ``rnn_reference``: returns the h sequence (T, B, H); nonlinearity tanh/relu/trec.
    ``bf16_products``: as ``lstm_fast``'s."""
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"nonlinearity must be one of {sorted(_ACTIVATIONS)}, "
                         f"got {nonlinearity!r}")
    _check(x, (h0,), w_ih, w_hh, 1, (b_ih, b_hh))
    ops = _ops()
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    act = _ACTIVATIONS[nonlinearity]
    args = [_dense(t, x) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    masks = [_mask(rec_mask, (B, H), x), _mask(keep_h, (T, B, H), x)]
    train = _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh)
    route = fast_eager.rnn_forward if fast_eager.eager_call(*args, *masks) else ops.rnn_forward
    return route(*args, *masks, act, float(threshold), train, bf16_products)[0]


# ------------------------------------------------------------------------------------------------
# Masks (csrc/masks.cpp) and Gaussian noise (csrc/noise.cpp). Each draws ONE 64-bit seed from
# torch's default CPU generator, so torch.manual_seed reproduces them; the values are then a pure
# function of the seed and the index.
# While a compiler, a tracer or a dispatch mode records the call, the registered op runs with the
# seed as a tensor, so a compiled or traced graph draws it anew at each call. Plain eager calls go
# to the C++ kernel directly, with the same seed and so the same values: the registered op's
# Python dispatch cost ~22 us a call (31 against 9 us for a (1, 20, 200) mask), 1.5-2% of a
# training step at the small benchmark size with locked dropout's three masks.


def _seed() -> Tensor:
    return torch.randint(-2**63, 2**63 - 1, (1,), dtype=torch.int64)


def _shaped(shape: tuple[int, ...] | torch.Size, like: Tensor) -> Tensor:
    """A tensor with the mask's shape and dtype and no memory (an expanded scalar): the mask ops
    read only its metadata, and unlike a list of sizes it traces under torch.jit.trace."""
    return like.new_empty((), dtype=like.dtype).expand(shape)


def _recorded(seed: Tensor) -> bool:
    """Whether this call is being recorded (torch.compile / export, torch.jit.trace, a fake or
    proxy tensor mode): the seed must then stay a tensor of the graph."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing() or type(seed) is not torch.Tensor
            or _get_current_dispatch_mode() is not None)


def _shaped_draw(name: str, shape: tuple[int, ...] | torch.Size, value: float, like: Tensor) -> Tensor:
    """One seeded draw of shape ``shape`` in like's dtype through op ``name``, whose registered form
    takes (seed, shaped-like, value) and native form (shape, value, seed, dtype)."""
    seed = _seed()
    if _recorded(seed):
        return getattr(_ops(), name)(seed, _shaped(shape, like), float(value))
    return getattr(native_ops(), name)(list(shape), float(value), int(seed), like.dtype)


def fast_dropout_mask(shape: tuple[int, ...] | torch.Size, p: float, like: Tensor) -> Tensor:
    """Entries 0 with probability p, else 1/(1-p), in like's dtype (CPU float32 / float64)."""
    return _shaped_draw("dropout_mask", shape, p, like)


def fast_dropout(x: Tensor, p: float) -> Tensor:
    """``x * fast_dropout_mask(x.shape, p, x)`` (the same values for the same generator state)
    in one pass, the mask never stored: its backward draws it again from the seed."""
    seed = _seed()
    if _recorded(seed):
        return _ops().dropout_apply(x, seed, float(p))  # note the op's order: (x, seed, p)
    if not plain_autograd() or not fast_eager.eager_call(x):
        # torch.func / forward-mode AD: the same mask (same seed) multiplied in by torch
        return x * native_ops().dropout_mask(list(x.shape), float(p), int(seed), x.dtype)
    return fast_eager.DropoutApply.apply(x, float(p), int(seed))


def fast_keep_mask(prob: Tensor) -> Tensor:
    """0/1 in prob's dtype and shape, 1 with the per-element probability prob (CPU float32/64)."""
    seed = _seed()
    if _recorded(seed):
        return _ops().keep_mask(prob.detach(), seed)
    return native_ops().keep_mask(prob.detach(), int(seed))


def fast_keep_mask_const(shape: tuple[int, ...] | torch.Size, prob: float, like: Tensor) -> Tensor:
    """0/1 in like's dtype, 1 with probability prob; equal to fast_keep_mask(full(shape, prob))
    for the same generator state."""
    return _shaped_draw("keep_mask_const", shape, prob, like)


def fast_normal_noise(shape: tuple[int, ...] | torch.Size, std: float, like: Tensor) -> Tensor:
    """std * N(0, 1) entries in like's dtype (CPU float32 / float64), one seed per call."""
    return _shaped_draw("normal_noise", shape, std, like)
