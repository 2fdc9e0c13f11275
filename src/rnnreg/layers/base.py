"""RecurrentBase: the shared body of rnnreg.LSTM, GRU and RNN.

Parameters are registered under torch.nn's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
so a torch.nn state dict loads as is. Each forward call: draw the per-call weight masks (weight
drop, weight noise), then run the stack one layer at a time on the fused path (torch.nn's kernels)
or the stepwise path (our kernel), applying the between-layer dropouts in between. Recurrent state
is passed in and returned, never stored.
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..regularizers.locked_dropout import locked_dropout
from ..regularizers.masks import check_nonnegative, check_probability
from ..regularizers.weight_drop import drop_weight
from ..regularizers.weight_noise import add_weight_noise
from ..regularizers.monte_carlo import is_stochastic
from .fused import fused_layer
from .options import refusals
from .sequences import SequenceBatch, initial_state, keep_signals
from .states import RecurrentStates
from .stepwise import StepOptions, stepwise_layer
from .torch_arguments import check_torch_arguments, check_torch_input, flat_weight_names, torch_mode

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def positive_int(name: str, value: int) -> int:
    """``value`` if it is a positive int (not a bool); a ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class RecurrentBase(nn.RNNBase):
    """The body of rnnreg.LSTM / GRU / RNN, which also subclass torch.nn.LSTM / GRU / RNN: torch.nn's
    attributes (``mode``, ``proj_size``, ``all_weights``, ...) and methods (``_apply``, pickling)
    hold, while the parameters, ``forward`` and ``reset_parameters`` are rnnreg's.

    Shared arguments (every one composable with every other and with every cell):

    input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as torch.nn;
        ``dropout`` keeps exactly its torch meaning: fresh-mask dropout on the outputs of every
        layer but the last (the non-recurrent connections of Zaremba et al. 2014).
    input_p, hidden_p, output_p: locked (variational) dropout, one mask per sequence, on the input,
        between layers, and on the output (Gal & Ghahramani 2016; AWD-LSTM's dropouti/dropouth/dropout).
    weight_p: DropConnect on every hidden-to-hidden matrix, one mask per forward call
        (Wan et al. 2013; Merity et al. 2017's weight drop).
    weight_noise_std: Gaussian noise added to every weight matrix once per forward call (Graves 2011).
    recurrent_dropout: dropout on h_{t-1} where it enters the recurrence, one mask per sequence
        (Gal & Ghahramani 2016; Keras ``recurrent_dropout``); with
        ``recurrent_dropout_mode="semeniuta"`` it drops the candidate update instead, fresh each step
        (Semeniuta et al. 2016), for gated cells.
    zoneout_h_p: zoneout on the hidden state (Krueger et al. 2016); LSTM adds zoneout_c_p.
    implementation: "auto" (fused when nothing needs a per-step hand, else stepwise), "fused",
        "stepwise" (fast C++ kernel on CPU, reference elsewhere), or "reference" (plain autograd).
    mc_dropout: keep every stochastic regularizer on in eval (Gal & Ghahramani 2016).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *, input_p: float = 0.0,
                 hidden_p: float = 0.0, output_p: float = 0.0, weight_p: float = 0.0,
                 weight_noise_std: float = 0.0, recurrent_dropout: float = 0.0,
                 recurrent_dropout_mode: str = "gal", zoneout_h_p: float = 0.0,
                 zoneout_c_p: float = 0.0, peepholes: bool = False, forget_bias: float | None = None,
                 nonlinearity: str = "tanh", trec_threshold: float = 1.0,
                 recurrent_init: str = "default", implementation: str = "auto",
                 mc_dropout: bool = False, proj_size: int = 0) -> None:
        nn.Module.__init__(self)  # not RNNBase.__init__: the parameters are built below, as ours
        num_layers = check_torch_arguments(cell, input_size, hidden_size, num_layers, bias, batch_first,
                                           dropout, bidirectional, proj_size)
        for name, flag in (("peepholes", peepholes), ("mc_dropout", mc_dropout)):
            if not isinstance(flag, bool):  # as torch.nn's flags: "False" must not become True
                raise TypeError(f"{name} should be of type bool, got: {type(flag).__name__}")
        if proj_size:
            raise ValueError(f"proj_size (LSTM with projections) is not supported by rnnreg, got {proj_size}")
        # The option table (rnnreg.layers.options) decides which cell takes which option; a cell
        # refuses an option it does not have rather than ignoring it.
        given = locals()
        names = inspect.signature(RecurrentBase.__init__).parameters
        found = refusals(cell, {name: given[name] for name in names}, among=tuple(GATES),
                         label=lambda c: f"rnnreg.{c.upper()}")
        if found:
            raise found[0].error(found[0].message)
        self.cell = cell
        self.mode, self.proj_size = torch_mode(cell, nonlinearity), 0
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout = float(dropout)
        self.input_p = check_probability("input_p", input_p)
        self.hidden_p = check_probability("hidden_p", hidden_p)
        self.output_p = check_probability("output_p", output_p)
        self.weight_p = check_probability("weight_p", weight_p)
        self.weight_noise_std = check_nonnegative("weight_noise_std", weight_noise_std)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.recurrent_dropout_mode = recurrent_dropout_mode
        self.zoneout_h_p = check_probability("zoneout_h_p", zoneout_h_p)
        self.zoneout_c_p = check_probability("zoneout_c_p", zoneout_c_p)
        self.peepholes = peepholes
        self.forget_bias = None if forget_bias is None else float(forget_bias)
        if self.forget_bias is not None and not math.isfinite(self.forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {self.forget_bias}")
        if self.forget_bias is not None and not bias:
            raise ValueError("forget_bias needs bias=True")
        self.nonlinearity = nonlinearity
        self.trec_threshold = float(trec_threshold)
        self.recurrent_init = recurrent_init
        self.implementation = implementation
        self.mc_dropout = mc_dropout
        self._register_weights(device, dtype)
        self._flat_weights_names, self._all_weights = flat_weight_names(
            [tuple(n for n in names if n in self._parameters) for per_dir in self._names for names in per_dir])
        self._init_flat_weights()  # torch.nn's cache of the weights, refreshed by its _apply
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _register_weights(self, device, dtype) -> None:
        gates, hidden = GATES[self.cell] * self.hidden_size, self.hidden_size
        kw = {"device": device, "dtype": dtype}
        self._names: list[list[tuple[str, ...]]] = []
        for layer in range(self.num_layers):
            fan_in = self.input_size if layer == 0 else hidden * self.num_directions
            per_dir = []
            for suffix in ("", "_reverse")[: self.num_directions]:
                names = tuple(f"{kind}_l{layer}{suffix}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ch"))
                shapes = [(gates, fan_in), (gates, hidden)]
                shapes += [(gates,), (gates,)] if self.bias else [None, None]
                # Peepholes: diagonal weights for the i, f and o gates (Gers & Schmidhuber 2000).
                shapes += [(3 * hidden,)] if self.peepholes else [None]
                for name, shape in zip(names, shapes):
                    if shape is not None:
                        self.register_parameter(name, nn.Parameter(torch.empty(shape, **kw)))
                per_dir.append(names)
            self._names.append(per_dir)

    def reset_parameters(self) -> None:
        """torch.nn's init (uniform in +-1/sqrt(H)), then the cell's requested variants."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)
        hidden = self.hidden_size
        with torch.no_grad():
            for w_ih, w_hh, b_ih, b_hh, _ in (self._weights(n) for per_dir in self._names for n in per_dir):
                if self.forget_bias is not None:
                    # Jozefowicz et al. 2015: start with the forget gate open (the sum b_ih + b_hh).
                    b_ih[hidden:2 * hidden].fill_(self.forget_bias)
                    b_hh[hidden:2 * hidden].zero_()
                if self.recurrent_init == "identity":
                    # IRNN (Le et al. 2015): identity recurrence, zero biases, small input weights.
                    w_hh.copy_(torch.eye(hidden).repeat(GATES[self.cell], 1))
                    nn.init.normal_(w_ih, std=1e-3)
                    for b in (b_ih, b_hh):
                        if b is not None:
                            b.zero_()

    def flatten_parameters(self) -> None:
        """Accepted for torch.nn compatibility; weights are passed to the kernels per call."""

    def _weights(self, names: tuple[str, ...]) -> tuple[Tensor | None, ...]:
        return tuple(getattr(self, n, None) for n in names)

    def _direction_weights(self, names: tuple[str, ...], stochastic: bool) -> tuple[Tensor | None, ...]:
        """This call's weights: noised (Graves 2011) and weight-dropped (Merity et al. 2017 sec. 2),
        with one mask per call shared by every time step. The raw parameters are untouched, so
        their names, state-dict keys and gradients stay those of torch.nn."""
        w_ih, w_hh, b_ih, b_hh, peep = self._weights(names)
        w_ih = add_weight_noise(w_ih, self.weight_noise_std, stochastic)
        w_hh = drop_weight(add_weight_noise(w_hh, self.weight_noise_std, stochastic), self.weight_p, stochastic)
        return w_ih, w_hh, b_ih, b_hh, peep

    def _stepwise_reasons(self, stochastic: bool, keep_signal: object, return_cells: bool) -> list[str]:
        reasons = []
        if self.peepholes:
            reasons.append("peepholes")
        if self.nonlinearity == "trec":
            reasons.append("the TRec nonlinearity")
        if self.zoneout_h_p > 0.0 or self.zoneout_c_p > 0.0 or keep_signal is not None:
            reasons.append("zoneout")
        if self.recurrent_dropout > 0.0 and stochastic:
            reasons.append("recurrent dropout")
        if return_cells:
            reasons.append("cell sequences (return_cells=True)")
        return reasons

    def _path(self, stochastic: bool, keep_signal: object, return_cells: bool) -> str:
        reasons = self._stepwise_reasons(stochastic, keep_signal, return_cells)
        if self.implementation == "auto":
            return "stepwise" if reasons else "fused"
        if self.implementation == "fused" and reasons:
            raise ValueError(f"implementation='fused' cannot run {', '.join(reasons)}: "
                             "use implementation='auto' or 'stepwise'")
        return self.implementation

    def _kernel_train(self) -> bool:
        """The fused kernel's training flag: whenever a backward may follow (grad mode on), so
        that an eval-mode model can still be differentiated on cuDNN. Under ``torch.jit.trace``
        it is the module's mode, as torch.nn passes it, so the trace does not depend on the grad
        mode it was checked under."""
        return self.training if torch.jit.is_tracing() else torch.is_grad_enabled()

    def _step_options(self, stochastic: bool) -> StepOptions:
        return StepOptions(cell=self.cell, stochastic=stochastic, recurrent_dropout=self.recurrent_dropout,
                           semeniuta=self.recurrent_dropout_mode == "semeniuta",
                           zoneout_h=self.zoneout_h_p, zoneout_c=self.zoneout_c_p,
                           nonlinearity=self.nonlinearity, threshold=self.trec_threshold,
                           reference_only=self.implementation == "reference")

    def forward(self, input: Tensor | PackedSequence, hx=None, *, lengths: Tensor | Sequence[int] | None = None,
                zoneout_keep: Tensor | Sequence[Tensor] | None = None, return_states: bool = False,
                return_cells: bool = False):
        """torch.nn's forward, plus:

        lengths: per-sequence lengths (B,) for a padded tensor input (or pass a PackedSequence).
        zoneout_keep: per-step keep probabilities from outside (one tensor, or one per layer),
            shaped like the input with a last dim of 1 or H; training samples them, eval uses them;
            no gradient flows into them.
        return_states / return_cells: also return a RecurrentStates with every layer's sequences.
        """
        seq = SequenceBatch.from_input(input, self.batch_first, lengths)
        check_torch_input(seq.x, self.weight_ih_l0.dtype, self.input_size)
        shape = (self.num_layers * self.num_directions, seq.x.shape[1], self.hidden_size)
        h0, c0 = initial_state(hx, seq, shape, self.cell == "lstm")
        stochastic = is_stochastic(self)
        signals = keep_signals(zoneout_keep, seq, self.num_layers)
        path = self._path(stochastic, zoneout_keep, return_cells and self.cell == "lstm")
        opts = self._step_options(stochastic) if path != "fused" else None
        fused_op = self.nonlinearity if self.cell == "rnn" else self.cell
        valid = seq.valid()
        x = locked_dropout(seq.x, self.input_p, stochastic)  # (T, B, I)
        raw, dropped, cells, h_n, c_n = [], [], [], [], []
        dirs = self.num_directions
        for layer, names in enumerate(self._names):
            weights = [self._direction_weights(n, stochastic) for n in names]
            rows = slice(layer * dirs, (layer + 1) * dirs)
            c0_l = None if c0 is None else c0[rows]
            if path == "fused":
                flat = [w for per_dir in weights for w in per_dir[:4] if w is not None]
                out, hn, cn = fused_layer(fused_op, x, seq.lengths, h0[rows], c0_l, flat, self.bias, dirs == 2,
                                          self._kernel_train())
                cell_seq = None
            else:
                out, hn, cn, cell_seq = stepwise_layer(opts, x, seq.lengths, valid, h0[rows], c0_l, weights, signals[layer])
            raw.append(out)  # (T, B, D*H)
            cells.append(cell_seq)
            h_n.append(hn)
            c_n.append(cn)
            if layer < self.num_layers - 1:
                x = F.dropout(out, self.dropout, training=True) if stochastic and self.dropout > 0 else out
                x = locked_dropout(x, self.hidden_p, stochastic)
            else:
                x = locked_dropout(out, self.output_p, stochastic)
            dropped.append(x)
        h_n = torch.cat(h_n)  # (L*D, B, H)
        c_n = torch.cat(c_n) if self.cell == "lstm" else None
        if seq.unbatched:
            h_n, c_n = h_n.squeeze(1), (None if c_n is None else c_n.squeeze(1))  # (L*D, 1, H) -> (L*D, H)
        hidden = (h_n, c_n) if self.cell == "lstm" else h_n
        output = seq.restore(x)
        if return_states or return_cells:
            return output, hidden, RecurrentStates(raw, dropped, cells if return_cells else None)
        return output, hidden

    def extra_repr(self) -> str:
        params = inspect.signature(RecurrentBase.__init__).parameters
        changed = [f"{name}={getattr(self, name)!r}" for name, param in params.items()
                   if param.default is not inspect.Parameter.empty and name not in ("device", "dtype")
                   and getattr(self, name) != param.default]
        return ", ".join([f"{self.input_size}, {self.hidden_size}", *changed])
