"""Multi-process training under ``torchrun``: who am I, and how ranks agree on numbers.

``torchrun --nproc_per_node N -m rnnreg train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; with a
world size above 1 the trainer joins a process group (gloo on CPU, NCCL on CUDA), wraps the model
in DistributedDataParallel, gives each rank a contiguous share of the batch columns, sums the
loss totals across ranks, and lets only rank 0 write files. Without torchrun nothing here
touches torch.distributed.

Every method that communicates is a collective: all ranks must call it, in the same order, or
the group hangs. That is why the trainer agrees on every branch (a NaN, a stop request, the
time budget) with :meth:`Distributed.any` before taking it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def _env_int(name: str, default: str | None = None) -> int:
    """An integer from torchrun's environment, with a message naming the variable."""
    raw = os.environ.get(name, default)
    if raw is None:
        raise ValueError(f"{name} must be set when WORLD_SIZE > 1 (launch with torchrun)")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its node.

    The default, rank 0 of 1, is a plain single-process run; all methods then do nothing or
    return their input.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank}")
        if self.local_rank < 0:
            raise ValueError(f"local_rank must be >= 0, got {self.local_rank}")

    @classmethod
    def from_env(cls) -> "Distributed":
        """Read torchrun's environment; a plain ``python -m rnnreg`` run is rank 0 of 1."""
        world = _env_int("WORLD_SIZE", "1")
        if world <= 1:
            return cls()
        return cls(_env_int("RANK"), world, _env_int("LOCAL_RANK", "0"))

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process to agree with."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """``auto`` means this rank's GPU when CUDA is available, else the CPU."""
        if requested == "auto":
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        if requested == "cuda" and self.enabled:
            requested = f"cuda:{self.local_rank}"
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("train.device asks for CUDA but torch sees no GPU; use train.device=cpu")
        return torch.device(requested)

    def start(self, device: torch.device) -> None:
        """Join the process group (idempotent): NCCL for a GPU, gloo for the CPU. torchrun's
        MASTER_ADDR / MASTER_PORT (the ``env://`` method) say where the others are."""
        if self.enabled and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        """Leave the process group, if this process joined one. The barrier first: a group's gloo
        threads may still be releasing the tensors of the last collective, which needs the GIL,
        while destroying the group joins those threads with the GIL held (a deadlock otherwise)."""
        if self.enabled and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DDP averages gradients across ranks after each backward; alone, the model itself.

        DDP also copies rank 0's parameters to every rank here, so the ranks start equal even
        though each seeds its generator differently (for its own dropout masks)."""
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        # An adaptive softmax's tail cluster gets no gradient in a step where no target falls in
        # it; DDP must then look for such parameters or it waits for their gradients forever.
        unused = getattr(model, "softmax", "full") == "adaptive"
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)

    def sum(self, *values: float) -> list[float]:
        """Element-wise sum of floats over ranks (float64, so token counts stay exact)."""
        if not self.enabled:
            return list(values)
        backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(values, dtype=torch.float64, device=backend_device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a stop request, a NaN)."""
        return self.sum(float(flag))[0] > 0 if self.enabled else bool(flag)

    def gather(self, value: Any) -> list[Any]:
        """``value`` from every rank, in rank order, on every rank (pickled: for small objects
        such as RNG states or a carried hidden state). Alone: ``[value]``."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def share(self, value: Any, device: torch.device) -> Any:
        """Rank 0's ``value`` on every rank (joining the group on ``device`` if needed), e.g. the
        run directory rank 0 picked. Alone: ``value``."""
        if not self.enabled:
            return value
        self.start(device)
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. until rank 0 has written a file the others read)."""
        if self.enabled:
            dist.barrier()
