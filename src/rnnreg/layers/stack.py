"""RecurrentStack: single-layer rnnreg layers in a stack, with the dropouts on the connections.

What every stacked model shares (the language model, the sequence-task net, both sides of the
encoder-decoder): each layer is its own rnnreg.LSTM / GRU / RNN (so each may have its own size, as
AWD-LSTM's E -> H -> H -> E), and the stack regularizes the non-recurrent connections: the stack's
input (``input_p``), between layers (``hidden_p``) and the last output (``output_p``) get locked
dropout, one mask (1, B, W) per forward call shared by every step (Gal & Ghahramani 2016), after
Zaremba et al. (2014)'s dropout with a fresh mask each step (``nonrecurrent_p``). Everything on the
recurrence (weight drop, weight noise, recurrent dropout, zoneout, cell variants) is the layers'.
Which cell takes which option is :mod:`.options`' table. Data is time-major: (T, B, W).

The layers are the stack's children ``0``, ``1``, ... so a model holding the stack under the name
it gave its layers (``layers``) keeps its state-dict keys (``layers.0.weight_ih_l0``), and
``stack[l]`` is layer l. A caller that runs one window in several calls (step by step, Rocki 2016)
draws the connection masks once with :meth:`RecurrentStack.draw_masks` and passes them to every
call, and pins each layer's own per-call masks with ``seeds`` (:mod:`.pinned_rng`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..regularizers.masks import check_probability, dropout_mask
from ..regularizers.monte_carlo import is_stochastic
from .base import positive_int
from .gru import GRU
from .lstm import LSTM
from .options import OPTION_NAMES, OPTIONS, STACK_CELLS, cell_options
from .pinned_rng import pinned_rng
from .rnn import RNN

LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN, "irnn": RNN}  # irnn: an RNN with the table's fixed values


def layer_sizes(hidden_size: int, num_layers: int, hidden_sizes: Sequence[int] | None = None) -> list[int]:
    """Each layer's hidden size: ``hidden_sizes`` (one per layer) when given, else ``hidden_size``
    for each of ``num_layers`` layers."""
    positive_int("num_layers", num_layers)
    if hidden_sizes is None:
        return [positive_int("hidden_size", hidden_size)] * num_layers
    sizes = list(hidden_sizes)
    if len(sizes) != num_layers:
        raise ValueError(f"hidden_sizes must give one size per layer (num_layers={num_layers}), "
                         f"got {len(sizes)}")
    return [positive_int(f"hidden_sizes[{index}]", size) for index, size in enumerate(sizes)]


@dataclass(frozen=True)
class StackOutput:
    """What a stack returns (time-major; l indexes layers, W_l = directions * H_l).

    raw[l]: (T, B, W_l) layer l's output as its recurrence produced it. dropped[l]: the same after
    the connection that follows it (what layer l + 1 reads; dropped[-1] is the stack's output).
    cells[l]: (T, B, W_l) LSTM cell sequences when the stack has ``return_cells=True``, else None.
    states[l]: layer l's final state, (h, c) for an LSTM or h, each (directions, B, H_l).
    """
    raw: list[Tensor]
    dropped: list[Tensor]
    cells: list[Tensor] | None
    states: list

    @property
    def output(self) -> Tensor:
        return self.dropped[-1]


class RecurrentStack(nn.Module):
    """``len(sizes)`` single-layer rnnreg layers of ``cell`` ("lstm", "gru", "rnn" or "irnn").

    input_size: the width I of the stack's input; sizes: each layer's hidden size H_l.
    bidirectional: every layer reads both ways; layer l + 1 then reads 2 H_l features.
    drop_output: False leaves the last output as the recurrence produced it (no output_p, no
        nonrecurrent_p there): an encoder whose top output only feeds attention.
    return_cells: also return LSTM cell sequences (runs the layers stepwise).
    options: the recurrent options of :mod:`.options`' table (which cell takes which), by name:
    input_p, hidden_p, output_p and nonrecurrent_p are the connections' dropouts (module
    docstring); every other option goes to each layer (:class:`rnnreg.layers.base.RecurrentBase`).
    """

    def __init__(self, cell: str, input_size: int, sizes: Sequence[int], *, bidirectional: bool = False,
                 drop_output: bool = True, return_cells: bool = False, **options: Any) -> None:
        super().__init__()
        if cell not in STACK_CELLS:
            raise ValueError(f"cell must be one of {', '.join(map(repr, STACK_CELLS))}, got {cell!r}")
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(f"unexpected option {', '.join(map(repr, unknown))}: a stack takes the options "
                            f"of rnnreg.layers.options ({', '.join(OPTION_NAMES)})")
        values = {name: options.get(name, OPTIONS[name].default) for name in OPTION_NAMES}
        options = cell_options(cell, values, among=STACK_CELLS)
        self.sizes = [positive_int(f"sizes[{index}]", size) for index, size in enumerate(sizes)]
        if not self.sizes:
            raise ValueError("sizes must give at least one layer size")
        self.cell, self.input_size = cell, positive_int("input_size", input_size)
        self.directions = 2 if bidirectional else 1
        self.drop_output, self.return_cells = bool(drop_output), bool(return_cells)
        self.input_p = check_probability("input_p", values["input_p"])
        self.hidden_p = check_probability("hidden_p", values["hidden_p"])
        self.output_p = check_probability("output_p", values["output_p"])
        self.nonrecurrent_p = check_probability("nonrecurrent_p", values["nonrecurrent_p"])
        if self.output_p and not self.drop_output:
            raise ValueError("output_p drops the last output, which drop_output=False leaves alone")
        self.mc_dropout = False
        per_layer = {name: value for name, value in options.items() if not OPTIONS[name].connection}
        for index, (width, size) in enumerate(zip(self.widths(include_input=True), self.sizes)):
            layer = LAYERS[cell](width, size, 1, bidirectional=bool(bidirectional), **per_layer)
            self.add_module(str(index), layer)

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> nn.Module:
        return list(self._modules.values())[index]

    def widths(self, include_input: bool = False) -> list[int]:
        """Each layer's output width directions * H_l, after the stack's input width I if asked."""
        outputs = [size * self.directions for size in self.sizes]
        return [self.input_size, *outputs] if include_input else outputs

    def draw_masks(self, batch: int) -> list[Tensor | None]:
        """One locked-dropout mask (1, B, W) per connection: the input, each layer's output; None
        where the rate is 0, outside training (and MC dropout), or for an undropped output."""
        stochastic = is_stochastic(self)
        rates = [self.input_p, *[self.hidden_p] * (len(self) - 1), self.output_p]
        like = self[0].weight_ih_l0
        return [dropout_mask((1, batch, width), p, like) if stochastic and p > 0 else None
                for p, width in zip(rates, self.widths(include_input=True))]

    def forward(self, x: Tensor, states: Sequence | None = None, *, lengths: Tensor | None = None,
                zoneout_keep: Tensor | Sequence[Tensor | None] | None = None,
                seeds: Sequence[int | None] | None = None,
                masks: Sequence[Tensor | None] | None = None) -> StackOutput:
        """x (T, B, I). states: None (zeros) or one entry per layer, each None or as
        ``StackOutput.states`` gives it. lengths (B,): valid steps of a padded batch (None: all T).
        zoneout_keep: keep probabilities (T, B, 1) or (T, B, H_l) for every layer (one tensor) or
        per layer (surprisal-driven zoneout, Rocki 2016). seeds: one per layer, pinning its
        per-call masks. masks: the connections' masks from :meth:`draw_masks` (None: drawn here)."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (T, B, {self.input_size}), got shape {tuple(x.shape)}")
        states = _per_layer("states", states, len(self))
        keeps = _per_layer("zoneout_keep", zoneout_keep, len(self), broadcast=True)
        seeds = _per_layer("seeds", seeds, len(self))
        masks = self.draw_masks(x.shape[1]) if masks is None else _per_layer("masks", masks, len(self) + 1,
                                                                             per="connection")
        stochastic = is_stochastic(self)
        want_cells = self.return_cells and self.cell == "lstm"
        h = self._connect(x, masks[0], stochastic)  # (T, B, I)
        raw, dropped, cells, finals = [], [], [], []
        for index, layer in enumerate(self):
            with pinned_rng(seeds[index], x.device):
                out, final, seqs = layer(h, states[index], lengths=lengths, zoneout_keep=keeps[index],
                                         return_states=True, return_cells=want_cells)
            undropped = index == len(self) - 1 and not self.drop_output
            h = out if undropped else self._connect(out, masks[index + 1], stochastic)  # (T, B, W_l)
            raw.append(out)
            dropped.append(h)
            cells.append(seqs.cells[0] if want_cells else None)
            finals.append(final)
        return StackOutput(raw, dropped, cells if want_cells else None, finals)

    def _connect(self, x: Tensor, mask: Tensor | None, stochastic: bool) -> Tensor:
        """A non-recurrent connection: Zaremba et al. (2014)'s dropout, fresh per element and step,
        then the connection's locked mask (Gal & Ghahramani 2016)."""
        if stochastic and self.nonrecurrent_p > 0:
            x = F.dropout(x, self.nonrecurrent_p, training=True)
        return x if mask is None else x * mask

    def extra_repr(self) -> str:
        return (f"cell={self.cell!r}, sizes={self.sizes}, directions={self.directions}, "
                f"input_p={self.input_p}, hidden_p={self.hidden_p}, output_p={self.output_p}, "
                f"nonrecurrent_p={self.nonrecurrent_p}, drop_output={self.drop_output}")


def _per_layer(name: str, value: Any, count: int, broadcast: bool = False, per: str = "layer") -> list:
    """``value`` as a list of ``count`` entries: None (or, with ``broadcast``, one tensor) repeated,
    else a list or tuple of exactly ``count``."""
    if value is None or (broadcast and isinstance(value, Tensor)):
        return [value] * count
    if type(value) not in (list, tuple) or len(value) != count:
        raise ValueError(f"{name} must be {'one tensor or ' if broadcast else ''}a list or tuple with "
                         f"one entry per {per} ({count}), got {type(value).__name__}")
    return list(value)
