"""The C++ recurrences' eager route: the native kernels under a plain ``torch.autograd.Function``.

Why a second route beside the registered ops (``kernels/fast_ops.py``): in eager mode a
``torch.library.custom_op`` call passes through the dispatcher into Python twice (the op's
autograd formula, then its CPU kernel) and its backward once more: a T = B = 1, H = 4 LSTM call
forward and backward took 211-262 us that way on the Zen 5 EPYC of 2026-12-02 and 120-158 us
this way (``benchmarks/bench_kernel_parts.py``, "dispatch"). Both routes run
the same kernels with the same setup and backward functions (``fast_ops._lstm_setup``, ...), so
they give the same bits; ``kernels/fast.py`` takes this one only where nothing records the call
(no compiler, tracer or dispatch mode: :func:`eager_call`), and the registered ops everywhere else.

Second-order gradients: the backward is the kernel's hand-written one, not differentiable again.
Under ``create_graph=True`` its gradients are tied to its inputs through
:func:`.refuse_twice.refusing_twice`, so a second backward raises the registered route's error
instead of silently missing terms.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import fast_ops
from .build import native_ops
from .refuse_twice import refusing_twice


_PLAIN = (Tensor, torch.nn.Parameter)


def eager_call(*tensors: Tensor | None) -> bool:
    """Whether the call can take this route: plain tensors (or parameters), and nothing recording
    it (torch.compile / export, torch.jit.trace, a fake or proxy tensor mode, torch.func's
    transforms, a tensor subclass), which must see the registered ops."""
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing()
                or _get_current_dispatch_mode() is not None
                or torch._C._are_functorch_transforms_active()
                or any(t is not None and type(t) not in _PLAIN for t in tensors))


def _function(name: str, forward, arity: int, setup, backward, native_backward) -> type:
    """An autograd.Function running the native ``forward`` (its outputs padded to the registered
    op's ``arity``), then ``setup``; its backward is ``backward`` with the native backward kernel."""

    def fwd(ctx, *inputs):
        with torch.autocast("cpu", enabled=False):  # as the registered ops run: float32 inside
            out = fast_ops._padded(forward(*inputs), arity, inputs[0])
        setup(ctx, inputs, out)
        return out

    def bwd(ctx, *grads):
        with torch.autocast("cpu", enabled=False):  # as the registered ops run: float32 inside
            with torch.no_grad():
                result = backward(ctx, *grads, op=native_backward())
        return refusing_twice(result, ctx, grads, fast_ops.TWICE)

    return type(name, (torch.autograd.Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})


_Lstm = _function("_Lstm", lambda *a: native_ops().lstm_fwd(*a), 5, fast_ops._lstm_setup,
                  fast_ops._lstm_backward, lambda: native_ops().lstm_bwd)
_Gru = _function("_Gru", lambda *a: native_ops().gru_fwd(*a), 4, fast_ops._gru_setup,
                 fast_ops._gru_backward, lambda: native_ops().gru_bwd)
_Rnn = _function("_Rnn", lambda *a: native_ops().rnn_fwd(*a), 3, fast_ops._rnn_setup,
                 fast_ops._rnn_backward, lambda: native_ops().rnn_bwd)


def lstm_forward(*inputs) -> tuple[Tensor, ...]:
    """As ``torch.ops.rnnreg.lstm_forward`` (same arguments, same outputs), eagerly."""
    return _Lstm.apply(*inputs)


def gru_forward(*inputs) -> tuple[Tensor, ...]:
    """As ``torch.ops.rnnreg.gru_forward``, eagerly."""
    return _Gru.apply(*inputs)


def rnn_forward(*inputs) -> tuple[Tensor, ...]:
    """As ``torch.ops.rnnreg.rnn_forward``, eagerly."""
    return _Rnn.apply(*inputs)


class DropoutApply(torch.autograd.Function):
    """The eager route of ``fast_ops.dropout_apply`` (weight drop): the same kernel with a plain
    integer seed; its backward is the same call on the gradient, itself differentiable."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float, seed: int) -> Tensor:
        ctx.p, ctx.seed = p, seed
        return native_ops().dropout_apply(x, p, seed)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return DropoutApply.apply(grad, ctx.p, ctx.seed), None, None
