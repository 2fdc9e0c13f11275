"""GRU-D: a GRU that reads masks and time intervals and decays towards what is known.

Che et al. (2018), "Recurrent neural networks for multivariate time series with missing values",
Sci. Rep. 8:6085, section "GRU-D". With mask m_t, time since the last observation delta_t and
the last observed value x_last (see rnnreg.layers.grud_inputs):

    gamma_x = exp(-max(0, W_gx delta_t + b_gx))   decay rate; W_gx DIAGONAL: each variable decays
                                                   on its own interval only (input decay)
    x^_t    = m_t x_t + (1 - m_t)(gamma_x x_last + (1 - gamma_x) x_mean)
    gamma_h = exp(-max(0, W_gh delta_t + b_gh))   W_gh a FULL (H, D) matrix: every hidden unit may
                                                   decay on any variable's interval (hidden decay)
    h^_{t-1} = gamma_h * h_{t-1}
    and a GRU on (x^_t, m_t) from h^_{t-1}, the mask entering every gate (V m_t).

The gates follow torch.nn.GRU (order r, z, n; reset applied after the recurrent product;
h_t = (1 - z) n + z h^), as rnnreg.GRU does, so a GRU-D whose decays are all 1 IS a torch GRU on
the concatenated input [x^_t, m_t]. Che et al. write the update gate the other way round
(z <-> 1 - z, a relabelling) and apply the reset gate before the recurrent product (U (r * h^));
torch's reset-after form is the cuDNN variant, which we keep for the reduction above.

Regularizers (one forward call draws them all with rnnreg.regularizers.step_noise, identity or
expectation in eval):
recurrent_dropout on h^_{t-1} where it enters the gates, one mask per sequence (Gal & Ghahramani
2016), or with recurrent_dropout_mode="semeniuta" on the candidate n_t, fresh each step
(Semeniuta et al. 2016); zoneout_h_p (Krueger et al. 2017): a zoned-out unit keeps h^_{t-1}, as if
its update gate were forced to keep h^_{t-1}, so it still decays (the decay models elapsed time, not an
update); in eval it takes the expectation, like rnnreg.GRU.

Two implementations, same result: "fast" computes the decays, x^ and the input projections for all
steps at once and loops only over the recurrence; "reference" follows the equations step by step
with the literal diagonal matrix diag(w_gx). Tests hold them to agree on outputs and gradients.
The fast loop's step (rnnreg.layers.grud_step) runs op by op on the CPU and, on other devices,
as one function compiled by ``torch.compile`` (a few fused kernels instead of ~15 launches per
step); ``compile_step`` overrides that choice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..regularizers.masks import check_probability
from ..regularizers.monte_carlo import is_stochastic
from ..regularizers.step_noise import StepNoise, draw_step_noise, freeze_padded
from .grud_inputs import last_observed
from .grud_step import compiles_by_default, run_steps

IMPLEMENTATIONS = ("fast", "reference")


class GRUD(nn.Module):
    """One GRU-D layer (see the module docstring). input_size D variables, hidden_size H units.

    x_mean (D,): the empirical mean of each variable over the observed training values (the
    imputation's fallback), kept as a buffer; None: zeros (standardized data). implementation: "fast"
    or "reference". mc_dropout: keep sampling the regularizers in eval (Gal & Ghahramani 2016).
    compile_step: run the fast loop's step through ``torch.compile`` (True), op by op (False), or
    None: compiled on every device but the CPU (see rnnreg.layers.grud_step).
    """

    def __init__(self, input_size: int, hidden_size: int, *, x_mean: Tensor | None = None,
                 recurrent_dropout: float = 0.0, recurrent_dropout_mode: str = "gal",
                 zoneout_h_p: float = 0.0, implementation: str = "fast", mc_dropout: bool = False,
                 compile_step: bool | None = None) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if recurrent_dropout_mode not in ("gal", "semeniuta"):
            raise ValueError(f"recurrent_dropout_mode must be 'gal' or 'semeniuta', got {recurrent_dropout_mode!r}")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        mean = torch.zeros(input_size) if x_mean is None else torch.as_tensor(x_mean, dtype=torch.float32)
        if mean.shape != (input_size,) or not torch.isfinite(mean).all():
            raise ValueError(f"x_mean must be {input_size} finite numbers, got shape {tuple(mean.shape)}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.semeniuta = recurrent_dropout_mode == "semeniuta"
        self.zoneout_h_p = check_probability("zoneout_h_p", zoneout_h_p)
        self.implementation, self.mc_dropout = implementation, bool(mc_dropout)
        self.compile_step = None if compile_step is None else bool(compile_step)
        gates = 3 * hidden_size
        self.input_decay_weight = nn.Parameter(torch.empty(input_size))  # the diagonal of W_gx
        self.input_decay_bias = nn.Parameter(torch.empty(input_size))
        self.hidden_decay_weight = nn.Parameter(torch.empty(hidden_size, input_size))  # W_gh: D -> H
        self.hidden_decay_bias = nn.Parameter(torch.empty(hidden_size))
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size))  # W (r, z, n) on x^
        self.weight_mh = nn.Parameter(torch.empty(gates, input_size))  # V (r, z, n) on the mask
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size))  # U (r, z, n)
        self.bias_ih = nn.Parameter(torch.empty(gates))
        self.bias_hh = nn.Parameter(torch.empty(gates))
        self.register_buffer("x_mean", mean.clone())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GRU weights as torch.nn.GRU. Decay weights start small and non-negative with zero bias:
        gamma = 1 at delta = 0, a mild decay (about 5% per unit of time) otherwise, and
        max(0, .) starts on its live side (a negative pre-activation for every delta >= 0 would
        never receive a gradient)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in (self.weight_ih, self.weight_mh, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(weight, -bound, bound)
        nn.init.uniform_(self.input_decay_weight, 0.0, 0.1)
        nn.init.uniform_(self.hidden_decay_weight, 0.0, 0.1 / self.input_size)
        nn.init.zeros_(self.input_decay_bias)
        nn.init.zeros_(self.hidden_decay_bias)

    def decays(self, delta: Tensor) -> tuple[Tensor, Tensor]:
        """gamma_x (..., D) and gamma_h (..., H) for intervals delta (..., D); a diagonal
        W_gx is an elementwise product."""
        gamma_x = torch.exp(-torch.relu(delta * self.input_decay_weight + self.input_decay_bias))
        gamma_h = torch.exp(-torch.relu(F.linear(delta, self.hidden_decay_weight, self.hidden_decay_bias)))
        return gamma_x, gamma_h

    def impute(self, x: Tensor, mask: Tensor, delta: Tensor, x_last: Tensor) -> Tensor:
        """x^ (x's shape), the input decay's imputation. ``where`` rather than m x: a NaN in a missing slot stays out."""
        gamma_x, _ = self.decays(delta)
        return self._impute(x, mask, x_last, gamma_x)

    def _impute(self, x: Tensor, mask: Tensor, x_last: Tensor, gamma_x: Tensor) -> Tensor:
        return torch.where(mask > 0, x, gamma_x * x_last + (1 - gamma_x) * self.x_mean)

    def draw_noise(self, steps: int, batch: int, like: Tensor) -> StepNoise:
        """This layer's masks for one call (rec (B, H), update and keep_h (T, B, H), see
        :class:`StepNoise`): sampled in training (or MC dropout), else the eval expectation. Draw
        once and pass as ``noise=`` to hand two layers the same randomness."""
        return draw_step_noise((steps, batch, self.hidden_size), like, stochastic=is_stochastic(self),
                               recurrent_dropout=self.recurrent_dropout, semeniuta=self.semeniuta,
                               zoneout_h=self.zoneout_h_p)

    def forward(self, x: Tensor, mask: Tensor, delta: Tensor, x_last: Tensor | None = None,
                h0: Tensor | None = None, *, lengths: Tensor | None = None,
                noise: StepNoise | None = None) -> tuple[Tensor, Tensor]:
        """x, mask, delta, x_last: (T, B, D); missing entries of x may hold anything. x_last None:
        computed here from x and mask, falling back to x_mean. h0 (1, B, H) or None (zeros).
        lengths (B,): valid steps (padded steps freeze the state and output 0). noise: explicit
        masks (default: drawn by :meth:`draw_noise`). Returns output (T, B, H) and h_T (1, B, H)."""
        steps, batch = self._check(x, mask, delta, x_last, h0)
        if x_last is None:
            x_last = last_observed(x, mask, self.x_mean)
        h = x.new_zeros(batch, self.hidden_size) if h0 is None else h0[0]
        valid = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device)
            valid = torch.arange(steps, device=x.device)[:, None] < lengths[None, :]  # (T, B)
        noise = self.draw_noise(steps, batch, x) if noise is None else noise
        # Padded steps keep everything (and do not decay, see _fast), given noise included.
        keep = freeze_padded(noise.keep_h, valid, (steps, batch, self.hidden_size), x)  # (T, B, H) or None
        run = self._fast if self.implementation == "fast" else self._reference
        out = run(x, mask, delta, x_last, h, valid, StepNoise(noise.rec, noise.update, keep))
        h_n = out[-1]  # frozen after each sequence's end
        if valid is not None:
            out = out * valid[:, :, None].to(out.dtype)
        return out, h_n[None]

    def _fast(self, x, mask, delta, x_last, h, valid, noise: StepNoise) -> Tensor:
        gamma_x, gamma_h = self.decays(delta)  # (T, B, D), (T, B, H)
        if valid is not None:
            gamma_h = torch.where(valid[:, :, None], gamma_h, torch.ones_like(gamma_h))
        x_hat = self._impute(x, mask, x_last, gamma_x)
        gi = F.linear(x_hat, self.weight_ih, self.bias_ih) + F.linear(mask, self.weight_mh)  # (T, B, 3H)
        compiled = compiles_by_default(x.device) if self.compile_step is None else self.compile_step
        return run_steps(h, gamma_h, gi, self.weight_hh, self.bias_hh, noise, compiled)  # (T, B, H)

    def _reference(self, x, mask, delta, x_last, h, valid, noise: StepNoise) -> Tensor:
        w_gx = torch.diag(self.input_decay_weight)  # (D, D): the paper's W_gx, diagonal
        (w_r, w_z, w_n), (v_r, v_z, v_n) = self.weight_ih.chunk(3), self.weight_mh.chunk(3)
        (u_r, u_z, u_n), (b_r, b_z, b_n) = self.weight_hh.chunk(3), self.bias_ih.chunk(3)
        c_r, c_z, c_n = self.bias_hh.chunk(3)
        outs = []
        for t in range(x.shape[0]):
            gamma_x = torch.exp(-torch.relu(delta[t] @ w_gx.T + self.input_decay_bias))  # decay rate
            gamma_h = torch.exp(-torch.relu(delta[t] @ self.hidden_decay_weight.T + self.hidden_decay_bias))
            fill = gamma_x * x_last[t] + (1 - gamma_x) * self.x_mean
            x_hat = torch.where(mask[t] > 0, x[t], fill)  # input decay
            live = torch.ones_like(h[:, :1], dtype=torch.bool) if valid is None else valid[t][:, None]
            h_hat = torch.where(live, gamma_h * h, h)  # hidden decay, not on padded steps
            h_in = h_hat if noise.rec is None else h_hat * noise.rec
            m_t = mask[t]
            r = torch.sigmoid(x_hat @ w_r.T + m_t @ v_r.T + b_r + h_in @ u_r.T + c_r)  # reset
            z = torch.sigmoid(x_hat @ w_z.T + m_t @ v_z.T + b_z + h_in @ u_z.T + c_z)  # update
            n = torch.tanh(x_hat @ w_n.T + m_t @ v_n.T + b_n + r * (h_in @ u_n.T + c_n))  # candidate
            if noise.update is not None:
                n = n * noise.update[t]
            candidate = (1 - z) * n + z * h_hat
            keep = 0.0 if noise.keep_h is None else noise.keep_h[t]
            h = keep * h_hat + (1 - keep) * candidate
            outs.append(h)
        return torch.stack(outs)

    def _check(self, x, mask, delta, x_last, h0) -> tuple[int, int]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (T, B, {self.input_size}), got shape {tuple(x.shape)}")
        for name, tensor in (("mask", mask), ("delta", delta), ("x_last", x_last)):
            if tensor is not None and tensor.shape != x.shape:
                raise ValueError(f"{name} must have x's shape {tuple(x.shape)}, got {tuple(tensor.shape)}")
        if h0 is not None and h0.shape != (1, x.shape[1], self.hidden_size):
            raise ValueError(f"h0 must be (1, {x.shape[1]}, {self.hidden_size}), got {tuple(h0.shape)}")
        return x.shape[0], x.shape[1]

    def extra_repr(self) -> str:
        mode = "semeniuta" if self.semeniuta else "gal"
        return (f"{self.input_size}, {self.hidden_size}, recurrent_dropout={self.recurrent_dropout} ({mode}), "
                f"zoneout_h_p={self.zoneout_h_p}, implementation={self.implementation!r}")
