"""ClockworkRNN: an Elman RNN whose hidden modules tick at their own clock periods.

Koutnik, Greff, Gomez & Schmidhuber (2014), "A Clockwork RNN", ICML, sec. 3: the hidden layer is
split into g modules of k units, module i has period T_i (sorted ascending). At step t only the
modules with ``t mod T_i == 0`` compute ``h_i = f(W_H[i] h_{t-1} + W_I[i] x_t + b_i)`` (eq. 1 with
the gated block rows of eq. 3); the others copy their previous value. A module reads from itself
and from SLOWER modules only ("connections from slower to faster modules"), so with ascending
periods W_H is block-upper-triangular. We generalise "slower" to "period >= T_i": modules that
share a period read each other, as one larger module would.

Clock convention: 0-based. ``x[0]`` is time ``step_offset`` (default 0), at which EVERY module
updates (0 mod T = 0), so no module waits T_i - 1 steps on its initial state. Pass
``step_offset`` to continue a sequence split across calls.

W_H is stored as one ragged parameter per block row (module i's row holds only the columns it
may read), so ``sum(p.numel())`` counts exactly the paper's parameters and the forbidden entries
do not exist; the fast path assembles the full triangular matrix once per call.

Regularizers (identity at eval, unless ``mc_dropout``): ``recurrent_dropout`` drops h_{t-1} where
it enters W_H with one mask per sequence (Gal & Ghahramani 2016); ``zoneout_h_p`` keeps an ACTIVE
unit's previous value with that probability (Krueger et al. 2016, eq. 5), its expectation at eval
as in rnnreg's other layers. Inactive modules are held regardless.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.clockwork import clockwork_fast, clockwork_reference
from ..kernels.reference import activation
from ..regularizers.masks import check_probability
from ..regularizers.monte_carlo import is_stochastic
from ..regularizers.step_noise import draw_step_noise

NONLINEARITIES = ("tanh", "relu", "trec")
IMPLEMENTATIONS = ("auto", "fast", "reference")  # auto: fast (the config's default name)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_periods(periods: Sequence[int], hidden_size: int) -> tuple[int, ...]:
    if isinstance(periods, (str, bytes)) or not isinstance(periods, Sequence) or not periods:
        raise ValueError(f"periods must be a non-empty sequence of positive integers, got {periods!r}")
    if any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in periods):
        raise ValueError(f"periods must be positive integers, got {list(periods)}")
    if hidden_size % len(periods):
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by the number of periods "
                         f"({len(periods)}): every module gets hidden_size / len(periods) units")
    return tuple(sorted(periods))


class ClockworkRNN(nn.Module):
    """One Clockwork RNN layer (Koutnik et al. 2014), time-major like ``torch.nn.RNN``.

    periods: one clock period per module, sorted ascending here; hidden_size must divide evenly.
    nonlinearity: "tanh", "relu" or "trec" (x * [x > trec_threshold]).
    recurrent_dropout, zoneout_h_p, mc_dropout: see the module docstring.
    implementation: "fast" (the full triangular matmul every step, sleeping modules held by a
        per-step mask, hand-written BPTT: a Python loop on the CPU, the step loop's fused Elman
        step elsewhere, see rnnreg.kernels.clockwork) or "reference" (a per-module loop straight
        from the paper's equations under plain autograd: the slow twin the tests check "fast"
        against).

    forward(x (T, B, I), hx (1, B, H) | None, *, step_offset=0) -> (output (T, B, H), h_T (1, B, H)).
    """
    unit_periods: Tensor  # (H,) buffer: each unit's module period

    def __init__(self, input_size: int, hidden_size: int, periods: Sequence[int], *,
                 nonlinearity: str = "tanh", trec_threshold: float = 1.0, bias: bool = True,
                 recurrent_dropout: float = 0.0, zoneout_h_p: float = 0.0,
                 implementation: str = "fast", mc_dropout: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.periods = _check_periods(periods, hidden_size)
        self.module_size = hidden_size // len(self.periods)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {', '.join(map(repr, NONLINEARITIES))}, "
                             f"got {nonlinearity!r}")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {', '.join(map(repr, IMPLEMENTATIONS))}, "
                             f"got {implementation!r}")
        self.nonlinearity, self.trec_threshold = nonlinearity, float(trec_threshold)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.zoneout_h_p = check_probability("zoneout_h_p", zoneout_h_p)
        self.implementation, self.mc_dropout = implementation, bool(mc_dropout)
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.bias = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        # Block row i reads columns from the first module with period T_i onwards (block-upper-triangular).
        self.column_start = tuple(self.periods.index(p) * self.module_size for p in self.periods)
        self.weight_hh = nn.ParameterList(nn.Parameter(torch.empty(self.module_size, hidden_size - start, **kw))
                                          for start in self.column_start)
        unit_periods = torch.tensor(self.periods, device=device).repeat_interleave(self.module_size)
        self.register_buffer("unit_periods", unit_periods, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn.RNN's initialisation: every weight uniform in +-1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def recurrent_matrix(self) -> Tensor:
        """The full (H, H) W_H: each block row left-padded with the zeros it may not read."""
        rows = [F.pad(block, (start, 0)) for block, start in zip(self.weight_hh, self.column_start)]
        return torch.cat(rows, 0)  # (H, H)

    def active(self, steps: int, step_offset: int = 0) -> Tensor:
        """(steps, H) bool: unit j updates at step t when (step_offset + t) mod T_{module(j)} == 0."""
        times = torch.arange(step_offset, step_offset + steps, device=self.unit_periods.device)
        return times[:, None] % self.unit_periods[None, :] == 0  # (T, H)

    def forward(self, x: Tensor, hx: Tensor | None = None, *, step_offset: int = 0) -> tuple[Tensor, Tensor]:
        """Run the layer; see the class docstring for shapes."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (T, B, {self.input_size}), got shape {tuple(x.shape)}")
        if isinstance(step_offset, bool) or not isinstance(step_offset, int) or step_offset < 0:
            raise ValueError(f"step_offset must be a non-negative integer, got {step_offset!r}")
        steps, batch = x.shape[:2]
        if hx is None:
            h0 = x.new_zeros(batch, self.hidden_size)
        elif hx.shape != (1, batch, self.hidden_size):
            raise ValueError(f"hx must be (1, {batch}, {self.hidden_size}), got shape {tuple(hx.shape)}")
        else:
            h0 = hx.reshape(batch, self.hidden_size)  # (1, B, H) -> (B, H)
        noise = draw_step_noise((steps, batch, self.hidden_size), x, stochastic=is_stochastic(self),
                                recurrent_dropout=self.recurrent_dropout, zoneout_h=self.zoneout_h_p)
        rec_mask, zone = noise.rec, noise.keep_h  # (B, H) or None, (T, B, H) or None
        if self.implementation == "reference":
            out = clockwork_reference(x, h0, self.weight_ih, self.bias, list(self.weight_hh), self.periods,
                                      self.column_start, self._act, rec_mask, zone, step_offset)
        else:
            # Hold weight per unit and step: 1 where the module sleeps, else the zoneout keep weight.
            active = self.active(steps, step_offset).to(x.dtype)[:, None, :]  # (T, 1, H)
            hold = 1.0 - active if zone is None else 1.0 - active * (1.0 - zone)  # (T, 1 or B, H)
            xw = F.linear(x, self.weight_ih, self.bias)  # (T, B, H): every step's input projection at once
            out = clockwork_fast(xw, h0, self.recurrent_matrix(), hold, rec_mask, self.nonlinearity,
                                 self.trec_threshold)
        return out, out[-1:].clone()  # h_T as (1, B, H)

    def _act(self, pre: Tensor) -> Tensor:
        return activation(pre, self.nonlinearity, self.trec_threshold)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, periods={list(self.periods)}, "
                f"nonlinearity={self.nonlinearity!r}, recurrent_dropout={self.recurrent_dropout}, "
                f"zoneout_h_p={self.zoneout_h_p}, implementation={self.implementation!r}")
