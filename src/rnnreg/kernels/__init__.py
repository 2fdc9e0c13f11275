"""Stepwise recurrences: a fast C++ CPU kernel, the device-generic step loop (Triton pointwise
kernels on GPUs), and their plain-autograd reference twin."""

from __future__ import annotations

import logging
from typing import Callable

import torch

from . import reference
from .autograd_modes import plain_autograd
from .precision import outside_cpu_autocast

log = logging.getLogger(__name__)
FAST_DTYPES = (torch.float32, torch.float64)

# The reference twin as the layers run it on the CPU: under CPU autocast entirely in float32 with
# autocast off (without the C++ kernels' bf16 products), its outputs in the dtype torch.nn's layer
# hands on (the GRU's float32), as the C++ kernels hand theirs on (kernels/precision.py).
_CPU_REFERENCES = {
    cell: outside_cpu_autocast(cast_outputs=cell != "gru")(getattr(reference, f"{cell}_reference"))
    for cell in ("lstm", "gru", "rnn")}


def pick_kernel(cell: str, like: torch.Tensor, reference_only: bool = False) -> Callable:
    """Return the stepwise function for ``cell`` ('lstm', 'gru', 'rnn').

    The C++ kernel serves float32/float64 CPU tensors. Every other device, and half precision on
    the CPU, runs the step loop (``kernels/steploop.py``: per step one GEMM and one fused
    pointwise pass, Triton kernels where Triton runs, torch ops elsewhere). The reference twin
    serves ``reference_only``, a CPU where the extension cannot be built, and forward-mode AD or a
    torch.func transform (grad, jacrev, jvp, vmap): the kernel and the step loop have hand-written
    backward passes and no tangent or batching rule, where the twin is plain autograd. It also
    serves ``torch.export`` where the step loop would run: its buffers written in place (``out=``)
    exported into a program that failed when called with grad enabled, while the C++ kernel is a
    registered operator and exports as one.
    """
    fast_cpu = like.device.type == "cpu" and like.dtype in FAST_DTYPES
    if reference_only or not plain_autograd() or (torch.compiler.is_exporting() and not fast_cpu):
        if like.device.type == "cpu":
            return _CPU_REFERENCES[cell]
        return getattr(reference, f"{cell}_reference")
    if fast_cpu:
        from . import fast

        if fast.fast_available():
            return getattr(fast, f"{cell}_fast")
        return _CPU_REFERENCES[cell]
    from . import steploop  # picks Triton or torch pointwise itself (steploop.pointwise_for)

    return getattr(steploop, f"{cell}_steploop")
