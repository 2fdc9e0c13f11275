"""RNNLanguageModel: the word/character language model of Zaremba et al. (2014) and AWD-LSTM.

Embedding -> a :class:`~rnnreg.layers.stack.RecurrentStack` of single-layer rnnreg layers (each
with its own size, e.g. AWD-LSTM's E -> H -> H -> E) -> an output layer: a linear decoder and full
softmax, an adaptive softmax (:mod:`.adaptive_softmax`, for large vocabularies) or a mixture of
softmaxes (:mod:`.mixture_of_softmaxes`). The stack's input is the
embedding output and its output feeds the decoder, so its connection dropouts are the model's:
locked dropout on the embedding output, between layers and on the last output, and Zaremba et
al.'s fresh-mask dropout on the same connections. Data is time-major throughout: tokens (T, B),
hidden sequences (T, B, H_l), logits (T, B, V). No recurrent state is stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.base import positive_int
from ..layers.stack import RecurrentStack, layer_sizes
from ..regularizers import Embedding
from ..regularizers.masks import check_probability
from ..regularizers.monte_carlo import is_stochastic
from .adaptive_softmax import AdaptiveSoftmax
from .mixture_of_softmaxes import MixtureOfSoftmaxes


@dataclass(frozen=True)
class LMOutput:
    """What a language model returns (time-major; l indexes layers, H_l is layer l's size).

    logits: (T, B, V) next-token scores (a mixture of softmaxes returns its log-probabilities,
    which are logits too); None for an adaptive softmax given ``targets`` (it never forms them).
    nll: (T, B) float32 -log p(target) when the forward was given ``targets``, else None. state: one entry per layer, (h, c) for an LSTM or h, each
    (1, B, H_l), to pass back as ``state`` for the next window. raw[l]: (T, B, H_l) layer outputs;
    dropped[l]: the same after the following dropouts (dropped[-1] feeds the decoder). AR goes on
    dropped[-1], TAR on raw[-1] (Merity et al. 2017). cells: LSTM cell sequences (T, B, H_l) when
    the model has ``return_cells=True``, else None.
    """
    logits: Tensor
    state: Any
    raw: list[Tensor]
    dropped: list[Tensor]
    cells: list[Tensor] | None = None
    nll: Tensor | None = None


SOFTMAXES = ("full", "adaptive", "mos")


def check_tokens(tokens: Tensor) -> tuple[int, int]:
    """Validate a (T, B) tensor of integer token ids; return (T, B)."""
    if not isinstance(tokens, Tensor) or tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens must be an int64 or int32 tensor of token ids, got "
                        f"{getattr(tokens, 'dtype', type(tokens).__name__)}")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be time-major (T, B), got shape {tuple(tokens.shape)}")
    return tokens.shape[0], tokens.shape[1]


def lm_layer_sizes(embedding_size: int, hidden_size: int, num_layers: int,
                   hidden_sizes: Sequence[int] | None = None, tie_weights: bool = False,
                   softmax: str = "full") -> list[int]:
    """Each layer's hidden size (see :func:`rnnreg.layers.stack.layer_sizes`). With tied weights
    the decoder reads the last layer through the (V, E) embedding matrix, so the last layer has E
    units (AWD-LSTM, Merity et al. 2017), and a given ``hidden_sizes`` must end with E. A mixture
    of softmaxes ties through its own E-sized contexts, so its last layer may have any size."""
    sizes = layer_sizes(hidden_size, num_layers, hidden_sizes)
    if softmax == "mos":
        return sizes
    if tie_weights and hidden_sizes is None:
        sizes[-1] = embedding_size
    elif tie_weights and sizes[-1] != embedding_size:
        raise ValueError(f"tie_weights=True needs the last of hidden_sizes to equal embedding_size "
                         f"({embedding_size}), got {sizes[-1]}")
    return sizes


class RNNLanguageModel(nn.Module):
    """Recurrent language model with every rnnreg regularizer, flat keyword arguments.

    cell: "lstm", "gru", "rnn" or "irnn" (ReLU RNN with identity recurrence, Le et al. 2015).
    hidden_sizes: one size per layer, overriding ``hidden_size``. tie_weights: share the embedding
        and output matrix (Press & Wolf 2017; Inan et al. 2017), sizing the last layer to
        ``embedding_size`` unless ``hidden_sizes`` says otherwise (then it must match).
    embed_p: embedding (word-type) dropout. options: the recurrent options of
        :mod:`rnnreg.layers.options`, by name. input_p, hidden_p, output_p: locked dropout on the
        embedding output, between layers and on the last output (Gal & Ghahramani 2016; AWD's
        dropouti/dropouth/dropout). nonrecurrent_p: Zaremba et al. (2014)'s dropout on every
        non-recurrent connection (the same three), fresh mask each step. The remaining options go to
        every layer (see :class:`rnnreg.layers.base.RecurrentBase`; which cell takes which:
        :mod:`rnnreg.layers.options`). init_range: the embedding and decoder weights start uniform
        in [-init_range, init_range], the decoder bias at 0 (Zaremba et al.); an adaptive
        softmax keeps torch's initialisation of its layers (and so does a tied embedding made of
        its output vectors).
    softmax: "full"; "adaptive" (Grave et al. 2017) with ``adaptive_cutoffs``,
        ``adaptive_div_value`` and the training split's ``frequency_order`` of the word ids; or
        "mos", a mixture of ``mos_experts`` softmaxes (Yang et al. 2017) with locked dropout
        ``mos_latent_p`` on their contexts.
    """

    def __init__(self, vocab_size: int, *, embedding_size: int = 400, hidden_size: int = 1150,
                 num_layers: int = 3, hidden_sizes: Sequence[int] | None = None, cell: str = "lstm",
                 tie_weights: bool = False, embed_p: float = 0.0, init_range: float = 0.1,
                 return_cells: bool = False, softmax: str = "full", adaptive_cutoffs: Sequence[int] = (),
                 adaptive_div_value: float = 4.0, frequency_order: Sequence[int] | None = None,
                 mos_experts: int = 15, mos_latent_p: float = 0.0, **options: Any) -> None:
        super().__init__()
        if isinstance(init_range, bool) or not isinstance(init_range, (int, float)) \
                or not math.isfinite(init_range) or init_range <= 0:
            raise ValueError(f"init_range must be a finite number > 0, got {init_range!r}")
        if softmax not in SOFTMAXES:
            raise ValueError(f"softmax must be one of {', '.join(SOFTMAXES)}, got {softmax!r}")
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.embedding_size = positive_int("embedding_size", embedding_size)
        self.tie_weights, self.softmax, self.embed_p = bool(tie_weights), softmax, embed_p
        self.mc_dropout = False  # the tied adaptive embedding's dropout follows MC dropout too
        sizes = lm_layer_sizes(embedding_size, hidden_size, num_layers, hidden_sizes, self.tie_weights, softmax)
        self.layers = RecurrentStack(cell, embedding_size, sizes, return_cells=return_cells, **options)
        if softmax == "adaptive":
            self.adaptive = AdaptiveSoftmax(sizes[-1], vocab_size, adaptive_cutoffs, div_value=adaptive_div_value,
                                            frequency_order=frequency_order)
            # Tied: the embedding is the adaptive softmax's output vectors (no matrix of its own).
            self.encoder = None if self.tie_weights else Embedding(vocab_size, embedding_size, embed_p=embed_p)
            if self.tie_weights:
                self.adaptive.output_vectors()  # refuses div_value != 1 now, not at the first step
                check_probability("embed_p", embed_p)
        else:
            self.encoder = Embedding(vocab_size, embedding_size, embed_p=embed_p)
            if softmax == "mos":
                self.mos = MixtureOfSoftmaxes(sizes[-1], embedding_size, vocab_size, experts=mos_experts,
                                              latent_p=mos_latent_p)
                self._init_output(self.mos.decoder, init_range)
            else:
                self.decoder = nn.Linear(sizes[-1], vocab_size)
                self._init_output(self.decoder, init_range)
        if self.encoder is not None:
            nn.init.uniform_(self.encoder.weight, -init_range, init_range)

    def _init_output(self, decoder: nn.Linear, init_range: float) -> None:
        """Zaremba et al.'s initialisation of the decoder, or the tie to the embedding."""
        nn.init.zeros_(decoder.bias)
        if self.tie_weights:
            decoder.weight = self.encoder.weight
        else:
            nn.init.uniform_(decoder.weight, -init_range, init_range)

    @property
    def cell(self) -> str:
        return self.layers.cell

    @property
    def sizes(self) -> list[int]:
        return self.layers.sizes

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> list:
        """Zero state for ``batch_size`` sequences: per layer (h, c) (LSTM) or h, each (1, B, H_l)."""
        weight = next(self.layers.parameters())
        device = weight.device if device is None else device
        zeros = [torch.zeros(1, batch_size, h, dtype=weight.dtype, device=device) for h in self.sizes]
        return [(z, torch.zeros_like(z)) if self.cell == "lstm" else z for z in zeros]

    @staticmethod
    def detach_state(state: Any) -> Any:
        """The same nested tuples/lists of tensors, cut from the graph (truncated BPTT)."""
        if isinstance(state, Tensor):
            return state.detach()
        if isinstance(state, (list, tuple)):
            items = [RNNLanguageModel.detach_state(s) for s in state]
            return type(state)(*items) if hasattr(state, "_fields") else type(state)(items)
        return state

    def embed(self, tokens: Tensor) -> Tensor:
        """(T, B) ids -> (T, B, E) embeddings, with embedding dropout in training."""
        if self.encoder is not None:
            return self.encoder(tokens)
        return self.adaptive.embed(tokens, self.embed_p, is_stochastic(self))

    def output(self, features: Tensor, targets: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
        """(T, B, H) last-layer outputs -> (logits (T, B, V) or None, nll (T, B) or None): the
        adaptive softmax forms no logits when it has ``targets``; nll only with ``targets``."""
        if self.softmax == "adaptive":
            flat = features.reshape(-1, features.shape[-1])  # (T, B, H) -> (T*B, H)
            if targets is None:
                return self.adaptive.full_log_probs(flat).view(*features.shape[:2], -1), None  # (T, B, V)
            return None, -self.adaptive.token_log_probs(flat, targets.reshape(-1)).float().view_as(targets)
        logits = self.mos(features) if self.softmax == "mos" else self.decoder(features)  # (T, B, V)
        return logits, None if targets is None else token_nll(logits, targets)

    def forward(self, tokens: Tensor, state: Sequence | None = None, *,
                zoneout_keep: Tensor | Sequence[Tensor | None] | None = None,
                targets: Tensor | None = None) -> LMOutput:
        """tokens (T, B) ids; state from ``init_state`` or a previous output (None = zeros);
        zoneout_keep: keep probabilities for every layer (one tensor) or per layer, each (T, B, 1)
        or (T, B, H_l), passed to the layers (surprisal-driven zoneout, Rocki 2016). targets:
        (T, B) next-token ids, to get their ``nll`` (the only way an adaptive softmax scores
        without forming (T, B, V) logits)."""
        _, batch = check_tokens(tokens)
        # The connection masks are drawn before the embedding's, the order one seed always gave.
        masks = self.layers.draw_masks(batch)
        out = self.layers(self.embed(tokens), state, zoneout_keep=zoneout_keep, masks=masks)  # (T, B, E) in
        logits, nll = self.output(out.output, targets)
        return LMOutput(logits, out.states, out.raw, out.dropped, out.cells, nll)

    def extra_repr(self) -> str:
        return f"tie_weights={self.tie_weights}, softmax={self.softmax!r}"


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """(T, B) float32 cross-entropy of (T, B, V) logits against (T, B) target ids."""
    flat = logits.float().reshape(-1, logits.shape[-1])  # (T, B, V) -> (T*B, V), in float32
    return F.cross_entropy(flat, targets.reshape(-1), reduction="none").view_as(targets)
