"""Opt-in CUDA graphs for the step loop's forward time loop.

A time loop launches two kernels per step (a GEMM and a pointwise pass); at the sizes rnnreg
trains (B*H of 10^4 to 10^5) each runs for microseconds, so on a GPU the loop is bound by
launching them from Python. Replaying a captured CUDA graph launches the whole loop at once.

Off by default: ``use_cuda_graphs(True)`` or the environment variable ``RNNREG_CUDA_GRAPHS=1``;
``clear_cuda_graphs()`` frees what was captured.
Used only for CUDA tensors and never while a stream is being captured already (a caller graphing
its whole step). Each distinct loop (cell, pointwise implementation, training or not, activation,
and every argument's shape and dtype, or its absence) is captured once, on first use, and kept in a
small least-recently-used cache. A replay needs fixed addresses, so each call copies its arguments
into the graph's own buffers, replays, and copies the written ones back out: extra memory traffic
of a few times the loop's outputs, small beside the launches saved. The captured buffers of each
cached loop stay allocated (about the size of its gate buffers) until evicted or cleared.

CI has no GPU: there the tests check only that it is never used on the CPU. The gpu-marked
tests/kernels/test_steploop_cuda.py checks it against the eager loop on a GPU
(benchmarks/gpu_session.sh), which no session of this work has had yet.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    buffers: tuple[Tensor | None, ...]  # the fixed-address copies of the loop's arguments


CACHE_SIZE = 4  # distinct loops kept captured: e.g. the layers of a stack, train and eval
_settings = {"on": os.environ.get("RNNREG_CUDA_GRAPHS", "0") == "1"}
_cache: OrderedDict[tuple, _Captured] = OrderedDict()


def use_cuda_graphs(on: bool = True) -> None:
    """Turn the forward loop's CUDA graphs on or off (the captured ones stay cached)."""
    _settings["on"] = bool(on)


def clear_cuda_graphs() -> None:
    """Free every captured graph and its buffers."""
    _cache.clear()


def graphs_used_for(t: Tensor) -> bool:
    """Whether a loop over tensors like ``t`` would run through a captured graph now."""
    return (_settings["on"] and t.device.type == "cuda"
            and not torch.cuda.is_current_stream_capturing())


def cached_graphs() -> int:
    return len(_cache)


def run_loop(key: tuple, loop: Callable[..., None], args: Sequence[Tensor | None],
             written: Sequence[int]) -> None:
    """``loop(*args)``, which writes the arguments at the indices ``written`` in place, directly or
    through a captured graph (see the module docstring)."""
    if not graphs_used_for(args[0]):
        loop(*args)
        return
    full_key = (key, args[0].device, tuple(None if a is None else (a.shape, a.dtype) for a in args))
    captured = _cache.pop(full_key, None) or _capture(loop, args)
    _cache[full_key] = captured  # most recently used last
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    # Everything is copied in, the written buffers too: what a loop leaves unwritten (e.g. the
    # row of hin the caller filled) then holds this call's values, with no per-loop bookkeeping.
    for buf, a in zip(captured.buffers, args):
        if a is not None:
            buf.copy_(a)
    captured.graph.replay()
    for i in written:
        if args[i] is not None:
            args[i].copy_(captured.buffers[i])


def _capture(loop: Callable[..., None], args: Sequence[Tensor | None]) -> _Captured:
    logger.info("capturing a CUDA graph of the step loop (%d cached)", len(_cache))
    buffers = tuple(None if a is None else a.clone() for a in args)
    # Warm-up outside the capture, on a side stream as torch.cuda.graphs asks: compiles the Triton
    # kernels and sets up cuBLAS, neither of which may happen during a capture.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        loop(*buffers)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loop(*buffers)
    return _Captured(graph, buffers)
