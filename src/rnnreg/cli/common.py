"""What every command shares: printing, the usage error, the one-time C++ build notice."""

from __future__ import annotations

import dataclasses
import time

from ..config import ModelConfig
from ..layers import options


class UsageError(Exception):
    """A command-line mistake: reported in one line, exit code 2."""


def say(text: str) -> None:
    print(text, flush=True)


def prepare_extension() -> bool:
    from ..kernels import fast

    say("loading the C++ extension (built once on first use, about 45 s on 2 cores) ...")
    start = time.perf_counter()
    ready = fast.fast_available()
    state = "ready" if ready else "unavailable, using the plain-autograd reference"
    say(f"C++ extension {state} ({time.perf_counter() - start:.1f} s)")
    return ready


def uses_extension(model: ModelConfig) -> bool:
    """Whether training this model draws masks or runs stepwise on the CPU (the C++ extension),
    as the option table says (:func:`rnnreg.layers.options.uses_extension`)."""
    return options.uses_extension(dataclasses.asdict(model))
