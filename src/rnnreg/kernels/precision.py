"""Kernels that compute in float32 under CPU autocast, handing autocast's dtype on.

CPU autocast (bf16 / fp16) reaches into ops it does not know: the C++ stepwise ops' own matrix
products then return a dtype the kernel does not take ("expected scalar type Float but found
BFloat16"), and oneDNN's LSTM, which torch.nn.LSTM calls, has no fp16 primitive on the CPU ("could
not create a primitive descriptor"). Such a kernel runs with autocast off on float32 arguments
(an upcast inside the op, logged once per dtype), and its outputs are cast to autocast's dtype,
which is what torch.nn's layers return under autocast, so every path hands the same dtype on.
oneDNN's LSTM has no bf16 primitive on some CPUs either (AVX2-only ones: torch.nn.LSTM fails
there under bf16 autocast too): the fused LSTM is handed to oneDNN under bf16 autocast where a
probe finds the primitive (:func:`onednn_bf16_lstm`) and upcast elsewhere.

Under bf16 autocast on a CPU with native bf16 arithmetic (AVX512_BF16 or AMX), a kernel that can
(the C++ LSTM, GRU and Elman kernels: ``bf16_products=True``) does its matrix products as
autocast's own products do, bf16 operands with float32 accumulation (oneDNN's bf16 matmuls); the
gates, the states, zoneout and the masks stay float32. Elsewhere the products stay float32, since
bf16 arithmetic is emulated there (its speed there was not measured).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

_logged: set[tuple[str, torch.dtype]] = set()


def _probe_native_bf16() -> bool:
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None),
              getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and probe() for probe in probes)


# Probed once, at import: dynamo refuses to trace torch.cpu's probes, and the CPU does not change.
_NATIVE_BF16 = _probe_native_bf16()


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512_BF16 or AMX tiles), as torch reports it."""
    return _NATIVE_BF16


@functools.cache
def onednn_bf16_lstm() -> bool:
    """Whether torch's CPU LSTM (oneDNN's) runs under bf16 autocast here, probed once on a
    one-step LSTM: it fails with "could not create a primitive descriptor" on CPUs whose oneDNN
    has no bf16 LSTM (AVX2-only ones). The probe's weights are drawn from a forked generator: a
    draw from the global one at the first bf16 call shifted every later mask of that process, so
    a run resumed under bf16 autocast (which probes again) drifted from the uninterrupted one."""
    try:
        with (torch.random.fork_rng(devices=[]), torch.no_grad(),
              torch.autocast("cpu", dtype=torch.bfloat16)):
            torch.nn.LSTM(2, 2)(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True


def outside_cpu_autocast(dtypes: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16), *,
                         cast_outputs: bool = True, bf16_products: bool = False,
                         bf16_passthrough: Callable[[], bool] | None = None) -> Callable:
    """Decorator: under CPU autocast to one of ``dtypes``, run the kernel in float32 with
    autocast off and cast its tensor outputs (a tensor, or a tuple of tensors / None) to
    autocast's dtype, or leave them in float32 (``cast_outputs=False``: what torch's GRU returns
    under CPU autocast, which does not list it); otherwise call it unchanged.
    ``bf16_products``: the kernel takes a ``bf16_products`` keyword, passed True under bf16
    autocast on a CPU with native bf16 (:func:`native_bf16`), else False.
    ``bf16_passthrough``: under bf16 autocast, call the kernel unchanged where it returns True
    (autocast's own bf16 route works there)."""
    def wrap(kernel: Callable) -> Callable:
        @functools.wraps(kernel)
        def run(*args, **kwargs):
            # float64 is outside autocast's reach (it casts float32 only): left as it is.
            if (not torch.is_autocast_enabled("cpu") or torch.get_autocast_dtype("cpu") not in dtypes
                    or any(isinstance(a, torch.Tensor) and a.dtype == torch.float64 for a in args)):
                return kernel(*args, **kwargs)
            dtype = torch.get_autocast_dtype("cpu")
            if bf16_passthrough is not None and dtype == torch.bfloat16 and bf16_passthrough():
                return kernel(*args, **kwargs)
            lowp = bf16_products and dtype == torch.bfloat16 and native_bf16()
            # Logged from eager code only: a logging call would break a compiled graph.
            if not torch.compiler.is_compiling() and (kernel.__name__, dtype) not in _logged:
                _logged.add((kernel.__name__, dtype))
                logger.info("%s under CPU autocast: computing in float32%s, outputs cast to %s", kernel.__name__,
                            " with bf16 matrix products" if lowp else "", dtype if cast_outputs else torch.float32)
            if bf16_products:
                kwargs = {**kwargs, "bf16_products": lowp}
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
