"""Seq2Seq: an encoder-decoder of rnnreg layers (Sutskever, Vinyals & Le 2014).

The encoder (embedding + a stack of single-layer rnnreg layers) reads the padded source with its
lengths; each decoder layer starts from the matching encoder layer's final state (Sutskever et
al. sec. 2, with one stack per side as in their sec. 3.4) and is trained with teacher forcing: it
reads BOS + the target and predicts the target + EOS. An optional dot attention over the
encoder's top outputs (Luong et al. 2015, :mod:`.seq2seq_attention`) feeds the output layer.

Regularizers as in :class:`rnnreg.models.RNNLanguageModel`, on both sides: embedding dropout,
locked dropout on each side's embedding output (``input_p``) and between layers (``hidden_p``),
on the decoder's last output (``output_p``), Zaremba et al. (2014)'s fresh-mask ``dropout`` on
those connections, and everything on the recurrence in the layers. Locked masks are drawn once
per ``encode`` / ``decode`` call, i.e. once per sequence under teacher forcing. Recurrent state is
explicit: ``decode`` takes a state and returns the next one, so decoding steps one token at a time.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..regularizers import Embedding
from ..regularizers.masks import check_probability, dropout_mask
from ..regularizers.monte_carlo import is_stochastic
from ..tasks.base import SequenceOutput
from .language_model import LAYERS, check_tokens
from .seq2seq_attention import DotAttention
from .stack_options import layer_options, layer_sizes

ATTENTIONS = ("none", "dot")


@dataclass(frozen=True)
class EncoderMemory:
    """What attention reads: outputs (S, B, H) of the top encoder layer, valid (S, B) bool."""
    outputs: Tensor
    valid: Tensor

    def select(self, index: Tensor) -> EncoderMemory:
        """The memory of sequences ``index`` (B',), e.g. one copy per beam."""
        return EncoderMemory(self.outputs.index_select(1, index), self.valid.index_select(1, index))


@dataclass(frozen=True)
class DecoderOutput:
    """logits (T, B, V); state: per layer (h, c) or h, each (1, B, H_l); raw / dropped / cells:
    per-layer (T, B, H_l) sequences, as :class:`rnnreg.tasks.base.SequenceOutput`."""
    logits: Tensor
    state: list
    raw: list[Tensor]
    dropped: list[Tensor]
    cells: list[Tensor] | None = None


def reorder_state(state: Sequence[Any], index: Tensor) -> list:
    """Pick batch entries ``index`` (B',) from a per-layer state of (1, B, H) tensors or tuples."""
    return [tuple(t.index_select(1, index) for t in s) if isinstance(s, tuple) else s.index_select(1, index)
            for s in state]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class Seq2Seq(nn.Module):
    """Encoder-decoder with every rnnreg regularizer, flat keyword arguments.

    source_vocab, target_vocab: token counts of each side. cell, embedding_size, hidden_size,
    num_layers, hidden_sizes and the regularizers: as :class:`rnnreg.models.RNNLanguageModel`
    (both stacks get the same sizes, so decoder layer l can start from encoder layer l).
    attention: "none" (the decoder sees the source only through its initial state) or "dot".
    init_range: embeddings and output weights start uniform in [-init_range, init_range].
    """

    def __init__(self, source_vocab: int, target_vocab: int, *, cell: str = "lstm",
                 embedding_size: int = 64, hidden_size: int = 128, num_layers: int = 1,
                 hidden_sizes: Sequence[int] | None = None, attention: str = "none",
                 embed_p: float = 0.0, input_p: float = 0.0, hidden_p: float = 0.0,
                 output_p: float = 0.0, dropout: float = 0.0, weight_p: float = 0.0,
                 recurrent_dropout: float = 0.0, recurrent_dropout_mode: str = "gal",
                 zoneout_h_p: float = 0.0, zoneout_c_p: float = 0.0, weight_noise_std: float = 0.0,
                 peepholes: bool = False, forget_bias: float | None = None, nonlinearity: str = "tanh",
                 trec_threshold: float = 1.0, recurrent_init: str = "default",
                 implementation: str = "auto", init_range: float = 0.1,
                 return_cells: bool = False) -> None:
        super().__init__()
        given = dict(locals())
        defaults = {k: p.default for k, p in inspect.signature(Seq2Seq.__init__).parameters.items()}
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(map(repr, LAYERS))}, got {cell!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(map(repr, ATTENTIONS))}, got {attention!r}")
        if isinstance(init_range, bool) or not isinstance(init_range, (int, float)) or not 0 < init_range < float("inf"):
            raise ValueError(f"init_range must be a finite number > 0, got {init_range!r}")
        _positive_int("source_vocab", source_vocab)
        self.sizes = layer_sizes(_positive_int("target_vocab", target_vocab), embedding_size, hidden_size,
                                 num_layers, hidden_sizes, False)
        self.cell, self.return_cells, self.embedding_size = cell, bool(return_cells), embedding_size
        self.input_p = check_probability("input_p", input_p)
        self.hidden_p = check_probability("hidden_p", hidden_p)
        self.output_p = check_probability("output_p", output_p)
        self.dropout = check_probability("dropout", dropout)
        self.mc_dropout = False
        options = layer_options(cell, given, defaults)
        inputs = [embedding_size, *self.sizes[:-1]]
        self.source_embedding = Embedding(source_vocab, embedding_size, embed_p=embed_p)
        self.target_embedding = Embedding(target_vocab, embedding_size, embed_p=embed_p)
        self.encoder_layers = nn.ModuleList(LAYERS[cell](i, h, 1, **options) for i, h in zip(inputs, self.sizes))
        self.decoder_layers = nn.ModuleList(LAYERS[cell](i, h, 1, **options) for i, h in zip(inputs, self.sizes))
        self.attention = DotAttention(self.sizes[-1]) if attention == "dot" else None
        self.readout = nn.Linear(self.sizes[-1], target_vocab)
        for weight in (self.source_embedding.weight, self.target_embedding.weight, self.readout.weight):
            nn.init.uniform_(weight, -init_range, init_range)
        nn.init.zeros_(self.readout.bias)

    @property
    def num_layers(self) -> int:
        return len(self.sizes)

    def forward(self, source: Tensor, source_lengths: Tensor, target_in: Tensor,
                target_lengths: Tensor | None = None) -> SequenceOutput:
        """Teacher forcing. source (S, B) ids, source_lengths (B,); target_in (T, B) ids (BOS then
        the target), target_lengths (B,) or None (all T). Returns logits (T, B, V) and the decoder
        layers' sequences."""
        state, memory = self.encode(source, source_lengths)
        out = self.decode(target_in, state, memory, target_lengths)
        return SequenceOutput(out.logits, out.raw, out.dropped, out.cells)

    def encode(self, source: Tensor, source_lengths: Tensor) -> tuple[list, EncoderMemory]:
        """Read source (S, B) with lengths (B,); return the final per-layer states (at each
        sequence's last valid step) and the memory attention reads."""
        steps, batch = check_tokens(source)
        lengths = torch.as_tensor(source_lengths).long()
        stochastic = is_stochastic(self)
        rates = [self.input_p, *[self.hidden_p] * (self.num_layers - 1)]
        masks = self._masks(batch, rates, [self.embedding_size, *self.sizes[:-1]], stochastic)
        x, states = self.source_embedding(source), []  # (S, B, E)
        for layer, mask in zip(self.encoder_layers, masks):
            x, hidden = layer(self._connect(x, mask, stochastic), lengths=lengths)  # (S, B, H_l)
            states.append(hidden)
        valid = torch.arange(steps, device=x.device)[:, None] < lengths.to(x.device)[None, :]  # (S, B)
        return states, EncoderMemory(x, valid)

    def decode(self, target_in: Tensor, state: Sequence[Any], memory: EncoderMemory,
               target_lengths: Tensor | None = None) -> DecoderOutput:
        """Run the decoder over target_in (T, B) from ``state`` (as ``encode`` or a previous call
        returns it); T = 1 is one decoding step."""
        _, batch = check_tokens(target_in)
        if len(state) != self.num_layers:
            raise ValueError(f"state must have one entry per layer ({self.num_layers}), got {len(state)}")
        stochastic = is_stochastic(self)
        rates = [self.input_p, *[self.hidden_p] * (self.num_layers - 1), self.output_p]
        masks = self._masks(batch, rates, [self.embedding_size, *self.sizes], stochastic)
        want_cells = self.return_cells and self.cell == "lstm"
        x = self._connect(self.target_embedding(target_in), masks[0], stochastic)  # (T, B, E)
        raw, dropped, cells, new_state = [], [], [], []
        for index, layer in enumerate(self.decoder_layers):
            out, hidden, seqs = layer(x, state[index], lengths=target_lengths, return_states=True,
                                      return_cells=want_cells)
            x = self._connect(out, masks[index + 1], stochastic)  # (T, B, H_l)
            raw.append(out)
            dropped.append(x)
            cells.append(seqs.cells[0] if want_cells else None)
            new_state.append(hidden)
        features = x if self.attention is None else self.attention(x, memory.outputs, memory.valid)
        return DecoderOutput(self.readout(features), new_state, raw, dropped, cells if want_cells else None)

    def _masks(self, batch: int, rates: list[float], sizes: list[int], stochastic: bool) -> list[Tensor | None]:
        """One locked-dropout mask (1, B, size) per connection (Gal & Ghahramani 2016)."""
        like = self.readout.weight
        return [dropout_mask((1, batch, size), p, like) if stochastic and p > 0 else None
                for p, size in zip(rates, sizes)]

    def _connect(self, x: Tensor, mask: Tensor | None, stochastic: bool) -> Tensor:
        """Zaremba et al. (2014)'s fresh-mask dropout, then the connection's locked mask."""
        if stochastic and self.dropout > 0:
            x = F.dropout(x, self.dropout, training=True)
        return x if mask is None else x * mask

    def extra_repr(self) -> str:
        return (f"cell={self.cell!r}, sizes={self.sizes}, attention={self.attention is not None}, "
                f"input_p={self.input_p}, hidden_p={self.hidden_p}, output_p={self.output_p}, "
                f"dropout={self.dropout}")
