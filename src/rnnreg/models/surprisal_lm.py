"""SurprisalZoneoutLM: the character model of Rocki (2016), "Surprisal-driven zoneout".

Design: a subclass of :class:`RNNLanguageModel` with the same weights, arguments and LMOutput,
that runs one time step at a time because the zoneout of step t depends on the prediction of
step t-1. At step t, s_t = -log p(x_t | x_{<t}) is the surprisal of the previous step's logits on
the current input, and every unit of every layer keeps its old state with probability
``keep_probability(s_t)`` = exp(-s_t / temperature) (:func:`surprisal_keep`), passed to the layers
as ``zoneout_keep``: an expected token hardly changes the state, a surprising one rewrites it.

- Step 0 has no previous prediction: it uses ``initial_surprisal``, by default log V, the
  surprisal of a uniform guess (nothing is known before the first token).
- The returned state is a :class:`SurprisalState`: the layers' states plus the last step's
  (detached) logits, so the first step of the next truncated-BPTT window gets its true surprisal
  and chained windows equal one long window. A plain (hidden, logits) tuple is accepted back.
- Training (or MC dropout) samples a Bernoulli keep mask per unit and step; eval uses the
  probabilities themselves (the expectation), like fixed-rate zoneout (Krueger et al. 2016). A
  unit zones out as a whole: an LSTM's h and c share the mask.
- Per-window masks (embedding, locked and weight dropout, weight noise, Gal recurrent dropout)
  are drawn once per window as in the parent: the stack's connection masks are drawn once and
  passed to every step, and each stepped module runs under a seed drawn once per window
  (:mod:`rnnreg.layers.pinned_rng`); Zaremba dropout stays fresh per step. Semeniuta recurrent
  dropout, fresh per step inside the layer, cannot be, so it is refused.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..layers.pinned_rng import draw_seed, pinned_rng
from ..regularizers.masks import bernoulli_keep
from ..regularizers.monte_carlo import is_stochastic
from ..regularizers.surprisal_zoneout import surprisal, surprisal_keep
from .language_model import LMOutput, RNNLanguageModel, check_tokens, token_nll


class SurprisalState(NamedTuple):
    """State of a :class:`SurprisalZoneoutLM` between windows."""
    hidden: list  # per layer, as RNNLanguageModel's state
    logits: Tensor | None  # (B, V) prediction of the next window's first token; None at the start


def _positive_float(name: str, value: Any, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (value <= 0 if strict else value < 0):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} 0, got {value!r}")
    return float(value)


class SurprisalZoneoutLM(RNNLanguageModel):
    """RNNLanguageModel whose zoneout is driven by surprisal (Rocki 2016); see the module doc.

    temperature: > 0; keep = exp(-surprisal / temperature), so a larger temperature zones out more.
    initial_surprisal: surprisal assumed at the very first step (None: log vocab_size).
    Every other argument is RNNLanguageModel's. ``forward(tokens, state=None)`` -> LMOutput
    whose ``state`` is a :class:`SurprisalState`.
    """

    def __init__(self, vocab_size: int, *, temperature: float = 1.0,
                 initial_surprisal: float | None = None, **kwargs: Any) -> None:
        if kwargs.get("softmax", "full") != "full":
            raise ValueError("a SurprisalZoneoutLM needs softmax='full': its surprisal reads every "
                             "step's full logits")
        super().__init__(vocab_size, **kwargs)
        self.mc_dropout = False  # samples its keep masks in training, or in eval with MC dropout on
        self.temperature = _positive_float("temperature", temperature, strict=True)
        self.initial_surprisal = (math.log(vocab_size) if initial_surprisal is None
                                  else _positive_float("initial_surprisal", initial_surprisal, strict=False))
        if kwargs.get("zoneout_h_p", 0.0) or kwargs.get("zoneout_c_p", 0.0):
            raise ValueError("zoneout_h_p and zoneout_c_p would be ignored: a SurprisalZoneoutLM's "
                             "zoneout rate comes from surprisal (set temperature instead)")
        if kwargs.get("recurrent_dropout", 0.0) > 0 and kwargs.get("recurrent_dropout_mode") == "semeniuta":
            raise ValueError("recurrent_dropout_mode='semeniuta' needs a fresh mask inside each layer "
                             "call, which a step-by-step SurprisalZoneoutLM cannot give; use 'gal'")

    def keep_probability(self, s: Tensor) -> Tensor:
        """Keep probability (B, 1) of every unit from the surprisal s (B,) of the current input."""
        return surprisal_keep(s, self.temperature)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> SurprisalState:
        """Zero layer states and no previous prediction."""
        return SurprisalState(super().init_state(batch_size, device), None)

    def forward(self, tokens: Tensor, state: SurprisalState | None = None, *,
                zoneout_keep: None = None, targets: Tensor | None = None) -> LMOutput:
        """tokens (T, B) -> LMOutput; the keep signal is computed here, so zoneout_keep is refused."""
        if zoneout_keep is not None:
            raise TypeError("SurprisalZoneoutLM computes zoneout_keep from surprisal; do not pass it")
        steps, batch = check_tokens(tokens)
        hidden, prev = _split_state(state)
        stochastic = is_stochastic(self)
        masks = self.layers.draw_masks(batch)  # one set for the whole window
        # One seed for the embedding, then one per layer.
        seeds = [draw_seed() if stochastic else None for _ in range(self.num_layers + 1)]
        logits, raw, dropped, cells = [], [], [], []
        for t in range(steps):
            keeps = self._step_keeps(prev, tokens[t], stochastic)
            with pinned_rng(seeds[0], tokens.device):
                x = self.encoder(tokens[t:t + 1])  # (1, B, E)
            out = self.layers(x, hidden, zoneout_keep=keeps, seeds=seeds[1:], masks=masks)
            hidden = out.states
            logits.append(self.decoder(out.output))  # (1, B, V)
            prev = logits[-1][0].detach()  # (B, V)
            raw.append(out.raw)
            dropped.append(out.dropped)
            cells.append(out.cells)
        logits = torch.cat(logits)  # (T, B, V)
        return LMOutput(logits, SurprisalState(hidden, prev), _by_layer(raw), _by_layer(dropped),
                        None if cells[0] is None else _by_layer(cells),
                        None if targets is None else token_nll(logits, targets))

    def _step_keeps(self, prev: Tensor | None, target: Tensor, stochastic: bool) -> list[Tensor]:
        """Per-layer zoneout_keep (1, B, 1) probabilities, or (1, B, H_l) sampled 0/1 masks."""
        if prev is None:
            s = torch.full(target.shape, self.initial_surprisal, dtype=self.decoder.weight.dtype,
                           device=target.device)  # (B,)
        else:
            s = surprisal(prev, target.long())  # (B,)
        keep = self.keep_probability(s).unsqueeze(0)  # (B, 1) -> (1, B, 1)
        if not stochastic:
            return [keep] * self.num_layers
        # Sampled here, from the live stream: inside a layer's pinned stream every step would
        # draw the same uniforms.
        return [bernoulli_keep(keep.expand(1, keep.shape[1], size).contiguous()) for size in self.sizes]


def _split_state(state: tuple | None) -> tuple[list | None, Tensor | None]:
    """(layer states, previous logits) from a SurprisalState, or from a plain (hidden, logits)
    tuple as a checkpoint holds it (checkpoints keep only plain types)."""
    if state is None:
        return None, None
    if not isinstance(state, tuple) or len(state) != 2 or type(state[0]) is not list:
        raise ValueError("state must be a SurprisalState (from init_state or LMOutput.state) "
                         "or a plain (hidden list, logits) tuple")
    return state[0], state[1]


def _by_layer(per_step: list[list[Tensor]]) -> list[Tensor]:
    """Per-step lists of per-layer (1, B, H_l) tensors -> per-layer (T, B, H_l) sequences."""
    return [torch.cat(steps) for steps in zip(*per_step)]
