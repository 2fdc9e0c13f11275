"""Kernels that compute in float32 under CPU autocast, handing autocast's dtype on.

CPU autocast (bf16 / fp16) reaches into ops it does not know: the C++ stepwise ops' own matrix
products then return a dtype the kernel does not take ("expected scalar type Float but found
BFloat16"), and oneDNN's LSTM, which torch.nn.LSTM calls, has no fp16 primitive on the CPU ("could
not create a primitive descriptor"). Such a kernel runs with autocast off on float32 arguments
(an upcast inside the op, logged once per dtype), and its outputs are cast to autocast's dtype,
which is what torch.nn's layers return under autocast, so every path hands the same dtype on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

_logged: set[tuple[str, torch.dtype]] = set()


def outside_cpu_autocast(dtypes: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16), *,
                         cast_outputs: bool = True) -> Callable:
    """Decorator: under CPU autocast to one of ``dtypes``, run the kernel in float32 with
    autocast off and cast its tensor outputs (a tensor, or a tuple of tensors / None) to
    autocast's dtype, or leave them in float32 (``cast_outputs=False``: what torch's GRU returns
    under CPU autocast, which does not list it); otherwise call it unchanged."""
    def wrap(kernel: Callable) -> Callable:
        @functools.wraps(kernel)
        def run(*args, **kwargs):
            # float64 is outside autocast's reach (it casts float32 only): left as it is.
            if (not torch.is_autocast_enabled("cpu") or torch.get_autocast_dtype("cpu") not in dtypes
                    or any(isinstance(a, torch.Tensor) and a.dtype == torch.float64 for a in args)):
                return kernel(*args, **kwargs)
            dtype = torch.get_autocast_dtype("cpu")
            # Logged from eager code only: a logging call would break a compiled graph.
            if not torch.compiler.is_compiling() and (kernel.__name__, dtype) not in _logged:
                _logged.add((kernel.__name__, dtype))
                logger.info("%s under CPU autocast: computing in float32, outputs cast to %s", kernel.__name__, dtype)
            with torch.autocast("cpu", enabled=False):
                out = kernel(*(_float32(a) for a in args), **{k: _float32(v) for k, v in kwargs.items()})
            return _cast(out, dtype) if cast_outputs else out
        return run
    return wrap


def _float32(value):
    """Low-precision floating tensors (and lists of them) to float32; anything else as is."""
    if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
        return value.float()
    if isinstance(value, list):
        return [_float32(v) for v in value]
    return value


def _cast(out, dtype: torch.dtype):
    if isinstance(out, torch.Tensor):
        return out.to(dtype) if out.is_floating_point() else out
    if isinstance(out, tuple):
        return tuple(_cast(o, dtype) for o in out)
    return out
