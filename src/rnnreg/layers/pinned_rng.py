"""Pinning the random stream so that a window run one step at a time draws one mask per window.

A model that must run step by step (surprisal-driven zoneout, Rocki 2016) calls each layer once
per time step, and every call would draw fresh per-call masks (weight drop, weight noise,
recurrent dropout, embedding dropout). Those regularizers are defined with ONE mask per sequence
(Gal & Ghahramani 2016; Merity et al. 2017), so each stepped module gets a seed drawn once per
window and runs every step under that seed: same draws in the same order, hence the same masks.
The caller's generator state is restored afterwards, so the rest of the program is unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def draw_seed() -> int:
    """One seed from torch's default CPU generator (so ``torch.manual_seed`` reproduces it)."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


@contextlib.contextmanager
def pinned_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with the default generators (CPU, and ``device``'s if CUDA) seeded by ``seed``.

    ``seed=None`` does nothing (the block uses the live stream). The generators' states are put
    back on exit.
    """
    if seed is None:
        yield
        return
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
