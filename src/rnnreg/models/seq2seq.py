"""Seq2Seq: an encoder-decoder of rnnreg layers (Sutskever, Vinyals & Le 2014).

The encoder (embedding + a stack of single-layer rnnreg layers) reads the padded source with its
lengths; each decoder layer starts from the matching encoder layer's final state (Sutskever et
al. sec. 2, with one stack per side as in their sec. 3.4) and is trained with teacher forcing: it
reads BOS + the target and predicts the target + EOS. An optional dot attention over the
encoder's top outputs (Luong et al. 2015, :mod:`.seq2seq_attention`) feeds the output layer.

Each side is a :class:`~rnnreg.layers.stack.RecurrentStack`, with the regularizers of
:class:`rnnreg.models.RNNLanguageModel`: embedding dropout, locked dropout on each side's
embedding output (``input_p``) and between layers (``hidden_p``), on the decoder's last output
(``output_p``), Zaremba et al. (2014)'s fresh-mask dropout (``nonrecurrent_p``) on those
connections, and everything on the recurrence in the layers. The encoder's top output, which
only attention reads, is left undropped. Locked masks are drawn once per ``encode`` / ``decode``
call, i.e. once per sequence under teacher forcing. Recurrent state is
explicit: ``decode`` takes a state and returns the next one, so decoding steps one token at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..layers.base import positive_int
from ..layers.stack import RecurrentStack, layer_sizes
from ..regularizers import Embedding
from .language_model import check_tokens
from .outputs import SequenceOutput
from .seq2seq_attention import DotAttention

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
                 embed_p: float = 0.0, init_range: float = 0.1,
                 return_cells: bool = False, **options: Any) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(map(repr, ATTENTIONS))}, got {attention!r}")
        if isinstance(init_range, bool) or not isinstance(init_range, (int, float)) or not 0 < init_range < float("inf"):
            raise ValueError(f"init_range must be a finite number > 0, got {init_range!r}")
        positive_int("source_vocab", source_vocab)
        positive_int("target_vocab", target_vocab)
        self.embedding_size = positive_int("embedding_size", embedding_size)
        sizes = layer_sizes(hidden_size, num_layers, hidden_sizes)
        self.source_embedding = Embedding(source_vocab, embedding_size, embed_p=embed_p)
        self.target_embedding = Embedding(target_vocab, embedding_size, embed_p=embed_p)
        # The encoder's top output feeds only attention and has never been dropped: no output_p.
        self.encoder_layers = RecurrentStack(cell, embedding_size, sizes, drop_output=False,
                                             **(options | {"output_p": 0.0}))
        self.decoder_layers = RecurrentStack(cell, embedding_size, sizes, return_cells=return_cells,
                                             **options)
        self.sizes = sizes
        self.attention = DotAttention(sizes[-1]) if attention == "dot" else None
        self.readout = nn.Linear(sizes[-1], target_vocab)
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
        masks = self.encoder_layers.draw_masks(batch)  # before the embedding's, as one seed always gave
        out = self.encoder_layers(self.source_embedding(source), lengths=lengths, masks=masks)  # (S, B, E) in
        top = out.output  # (S, B, H_L): the top layer's output, undropped
        valid = torch.arange(steps, device=top.device)[:, None] < lengths.to(top.device)[None, :]  # (S, B)
        return out.states, EncoderMemory(top, valid)

    def decode(self, target_in: Tensor, state: Sequence[Any], memory: EncoderMemory,
               target_lengths: Tensor | None = None) -> DecoderOutput:
        """Run the decoder over target_in (T, B) from ``state`` (as ``encode`` or a previous call
        returns it); T = 1 is one decoding step."""
        _, batch = check_tokens(target_in)
        masks = self.decoder_layers.draw_masks(batch)
        out = self.decoder_layers(self.target_embedding(target_in), state, lengths=target_lengths,
                                  masks=masks)  # (T, B, E) in
        top = out.output  # (T, B, H_L)
        features = top if self.attention is None else self.attention(top, memory.outputs, memory.valid)
        return DecoderOutput(self.readout(features), out.states, out.raw, out.dropped, out.cells)

    def extra_repr(self) -> str:
        return f"attention={self.attention is not None}"
