"""RNNLanguageModel: the word/character language model of Zaremba et al. (2014) and AWD-LSTM.

Embedding -> a stack of single-layer rnnreg recurrent layers (each with its own size, e.g.
AWD-LSTM's E -> H -> H -> E) -> linear decoder. The dropouts on the non-recurrent connections are
the model's own, drawn once per forward call; everything on the recurrence (weight drop,
recurrent dropout, zoneout, weight noise) is the layers'. Data is time-major throughout:
tokens (T, B), hidden sequences (T, B, H_l), logits (T, B, V). No recurrent state is stored.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import GRU, LSTM, RNN
from ..regularizers import Embedding
from ..regularizers.masks import check_probability, dropout_mask
from ..regularizers.monte_carlo import is_stochastic
from .pinned_rng import pinned_rng
from .stack_options import layer_options, layer_sizes

LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN, "irnn": RNN}


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


class RNNLanguageModel(nn.Module):
    """Recurrent language model with every rnnreg regularizer, flat keyword arguments.

    cell: "lstm", "gru", "rnn" or "irnn" (ReLU RNN with identity recurrence, Le et al. 2015).
    hidden_sizes: one size per layer, overriding ``hidden_size``. tie_weights: share the embedding
        and decoder matrix (Press & Wolf 2017; Inan et al. 2017), sizing the last layer to
        ``embedding_size`` unless ``hidden_sizes`` says otherwise (then it must match).
    embed_p: embedding (word-type) dropout. input_p, hidden_p, output_p: locked dropout on the
        embedding output, between layers and on the last output (Gal & Ghahramani 2016; AWD's
        dropouti/dropouth/dropout). dropout: Zaremba et al. (2014)'s fresh-mask dropout on those
        same non-recurrent connections. The remaining options go to every layer (see
        :class:`rnnreg.layers.base.RecurrentBase`). init_range: the embedding and decoder
        weights start uniform in [-init_range, init_range], the decoder bias at 0 (Zaremba et al.).
    """

    def __init__(self, vocab_size: int, *, embedding_size: int = 400, hidden_size: int = 1150,
                 num_layers: int = 3, hidden_sizes: Sequence[int] | None = None, cell: str = "lstm",
                 tie_weights: bool = False, embed_p: float = 0.0, input_p: float = 0.0,
                 hidden_p: float = 0.0, output_p: float = 0.0, dropout: float = 0.0,
                 weight_p: float = 0.0, recurrent_dropout: float = 0.0,
                 recurrent_dropout_mode: str = "gal", zoneout_h_p: float = 0.0,
                 zoneout_c_p: float = 0.0, weight_noise_std: float = 0.0, peepholes: bool = False,
                 forget_bias: float | None = None, nonlinearity: str = "tanh",
                 trec_threshold: float = 1.0, recurrent_init: str = "default",
                 implementation: str = "auto", init_range: float = 0.1,
                 return_cells: bool = False) -> None:
        super().__init__()
        given = dict(locals())
        defaults = {k: p.default for k, p in inspect.signature(RNNLanguageModel.__init__).parameters.items()}
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(map(repr, LAYERS))}, got {cell!r}")
        self.cell, self.tie_weights, self.return_cells = cell, bool(tie_weights), bool(return_cells)
        self.sizes = layer_sizes(vocab_size, embedding_size, hidden_size, num_layers, hidden_sizes,
                                 self.tie_weights)
        self.vocab_size, self.embedding_size = vocab_size, embedding_size
        self.input_p = check_probability("input_p", input_p)
        self.hidden_p = check_probability("hidden_p", hidden_p)
        self.output_p = check_probability("output_p", output_p)
        self.dropout = check_probability("dropout", dropout)
        if isinstance(init_range, bool) or not isinstance(init_range, (int, float)) \
                or not math.isfinite(init_range) or init_range <= 0:
            raise ValueError(f"init_range must be a finite number > 0, got {init_range!r}")
        self.mc_dropout = False
        options = layer_options(cell, given, defaults)
        self.encoder = Embedding(vocab_size, embedding_size, embed_p=embed_p)
        inputs = [embedding_size, *self.sizes[:-1]]
        self.layers = nn.ModuleList(LAYERS[cell](i, h, 1, **options) for i, h in zip(inputs, self.sizes))
        self.decoder = nn.Linear(self.sizes[-1], vocab_size)
        nn.init.uniform_(self.encoder.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        if self.tie_weights:
            self.decoder.weight = self.encoder.weight
        else:
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)

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
        stochastic = is_stochastic(self)
        masks = self._locked_masks(batch, stochastic)
        x = self._connect(self.encoder(tokens), masks[0], stochastic)  # (T, B, E)
        raw, dropped, cells, state = self._run_stack(x, self._layer_states(state),
                                                     self._layer_keeps(zoneout_keep), masks, stochastic)
        return LMOutput(self.decoder(dropped[-1]), state, raw, dropped, cells)

    def _layer_states(self, state: Sequence | None) -> list:
        if state is None:
            return [None] * self.num_layers
        if type(state) not in (list, tuple) or len(state) != self.num_layers:
            raise ValueError(f"state must be a list with one entry per layer ({self.num_layers}), "
                             f"as returned by init_state or LMOutput.state")
        return list(state)

    def _layer_keeps(self, zoneout_keep) -> list:
        if zoneout_keep is None or isinstance(zoneout_keep, Tensor):
            return [zoneout_keep] * self.num_layers
        if not isinstance(zoneout_keep, (list, tuple)) or len(zoneout_keep) != self.num_layers:
            raise ValueError(f"zoneout_keep must be a tensor or a sequence of one per layer "
                             f"({self.num_layers})")
        return list(zoneout_keep)

    def _locked_masks(self, batch: int, stochastic: bool) -> list[Tensor | None]:
        """One locked-dropout mask (1, B, size) per non-recurrent connection, for the whole window:
        the embedding output, each layer but the last, and the last output (Gal & Ghahramani 2016)."""
        rates = [self.input_p, *[self.hidden_p] * (self.num_layers - 1), self.output_p]
        like = self.decoder.weight
        return [dropout_mask((1, batch, size), p, like) if stochastic and p > 0 else None
                for p, size in zip(rates, [self.embedding_size, *self.sizes])]

    def _connect(self, x: Tensor, mask: Tensor | None, stochastic: bool) -> Tensor:
        """A non-recurrent connection: Zaremba et al. (2014)'s dropout, fresh per element, then the
        connection's locked mask."""
        if stochastic and self.dropout > 0:
            x = F.dropout(x, self.dropout, training=True)
        return x if mask is None else x * mask

    def _run_stack(self, x: Tensor, states: list, keeps: list, masks: list[Tensor | None],
                   stochastic: bool, seeds: Sequence[int] | None = None):
        """Run every layer on x (T, B, E); ``seeds`` pins each layer's per-call masks (see
        :mod:`.pinned_rng`). Returns raw, dropped, cells (or None) and the new per-layer states."""
        want_cells = self.return_cells and self.cell == "lstm"
        raw, dropped, cells, new_states = [], [], [], []
        for index, layer in enumerate(self.layers):
            with pinned_rng(None if seeds is None else seeds[index], x.device):
                out, hidden, seqs = layer(x, states[index], zoneout_keep=keeps[index],
                                          return_states=True, return_cells=want_cells)
            x = self._connect(out, masks[index + 1], stochastic)  # (T, B, H_l)
            raw.append(out)
            dropped.append(x)
            cells.append(seqs.cells[0] if want_cells else None)
            new_states.append(hidden)
        return raw, dropped, (cells if want_cells else None), new_states

    def extra_repr(self) -> str:
        return (f"cell={self.cell!r}, sizes={self.sizes}, tie_weights={self.tie_weights}, "
                f"input_p={self.input_p}, hidden_p={self.hidden_p}, output_p={self.output_p}, "
                f"dropout={self.dropout}, mc_dropout={self.mc_dropout}")
