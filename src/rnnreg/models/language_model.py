"""RNNLanguageModel: the word/character language model of Zaremba et al. (2014) and AWD-LSTM.

Embedding -> a :class:`~rnnreg.layers.stack.RecurrentStack` of single-layer rnnreg layers (each
with its own size, e.g. AWD-LSTM's E -> H -> H -> E) -> linear decoder. The stack's input is the
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
from torch import Tensor, nn

from ..layers.base import positive_int
from ..layers.stack import RecurrentStack, layer_sizes
from ..regularizers import Embedding


@dataclass(frozen=True)
class LMOutput:
    """What a language model returns (time-major; l indexes layers, H_l is layer l's size).

    logits: (T, B, V) next-token scores. state: one entry per layer, (h, c) for an LSTM or h, each
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


def check_tokens(tokens: Tensor) -> tuple[int, int]:
    """Validate a (T, B) tensor of integer token ids; return (T, B)."""
    if not isinstance(tokens, Tensor) or tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens must be an int64 or int32 tensor of token ids, got "
                        f"{getattr(tokens, 'dtype', type(tokens).__name__)}")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be time-major (T, B), got shape {tuple(tokens.shape)}")
    return tokens.shape[0], tokens.shape[1]


def lm_layer_sizes(embedding_size: int, hidden_size: int, num_layers: int,
                   hidden_sizes: Sequence[int] | None = None, tie_weights: bool = False) -> list[int]:
    """Each layer's hidden size (see :func:`rnnreg.layers.stack.layer_sizes`). With tied weights
    the decoder reads the last layer through the (V, E) embedding matrix, so the last layer has E
    units (AWD-LSTM, Merity et al. 2017), and a given ``hidden_sizes`` must end with E."""
    sizes = layer_sizes(hidden_size, num_layers, hidden_sizes)
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
        and decoder matrix (Press & Wolf 2017; Inan et al. 2017), sizing the last layer to
        ``embedding_size`` unless ``hidden_sizes`` says otherwise (then it must match).
    embed_p: embedding (word-type) dropout. options: the recurrent options of
        :mod:`rnnreg.layers.options`, by name. input_p, hidden_p, output_p: locked dropout on the
        embedding output, between layers and on the last output (Gal & Ghahramani 2016; AWD's
        dropouti/dropouth/dropout). nonrecurrent_p: Zaremba et al. (2014)'s dropout on every
        non-recurrent connection (the same three), fresh mask each step. The remaining options go to
        every layer (see :class:`rnnreg.layers.base.RecurrentBase`; which cell takes which:
        :mod:`rnnreg.layers.options`). init_range: the embedding and decoder weights start uniform
        in [-init_range, init_range], the decoder bias at 0 (Zaremba et al.).
    """

    def __init__(self, vocab_size: int, *, embedding_size: int = 400, hidden_size: int = 1150,
                 num_layers: int = 3, hidden_sizes: Sequence[int] | None = None, cell: str = "lstm",
                 tie_weights: bool = False, embed_p: float = 0.0, init_range: float = 0.1,
                 return_cells: bool = False, **options: Any) -> None:
        super().__init__()
        if isinstance(init_range, bool) or not isinstance(init_range, (int, float)) \
                or not math.isfinite(init_range) or init_range <= 0:
            raise ValueError(f"init_range must be a finite number > 0, got {init_range!r}")
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.embedding_size = positive_int("embedding_size", embedding_size)
        self.tie_weights = bool(tie_weights)
        sizes = lm_layer_sizes(embedding_size, hidden_size, num_layers, hidden_sizes, self.tie_weights)
        self.encoder = Embedding(vocab_size, embedding_size, embed_p=embed_p)
        self.layers = RecurrentStack(cell, embedding_size, sizes, return_cells=return_cells,
                                     **options)
        self.decoder = nn.Linear(sizes[-1], vocab_size)
        nn.init.uniform_(self.encoder.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        if self.tie_weights:
            self.decoder.weight = self.encoder.weight
        else:
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)

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
        weight = self.decoder.weight
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

    def forward(self, tokens: Tensor, state: Sequence | None = None, *,
                zoneout_keep: Tensor | Sequence[Tensor | None] | None = None) -> LMOutput:
        """tokens (T, B) ids; state from ``init_state`` or a previous output (None = zeros);
        zoneout_keep: keep probabilities for every layer (one tensor) or per layer, each (T, B, 1)
        or (T, B, H_l), passed to the layers (surprisal-driven zoneout, Rocki 2016)."""
        _, batch = check_tokens(tokens)
        # The connection masks are drawn before the embedding's, the order one seed always gave.
        masks = self.layers.draw_masks(batch)
        out = self.layers(self.encoder(tokens), state, zoneout_keep=zoneout_keep, masks=masks)  # (T, B, E) in
        return LMOutput(self.decoder(out.output), out.states, out.raw, out.dropped, out.cells)

    def extra_repr(self) -> str:
        return f"tie_weights={self.tie_weights}"
