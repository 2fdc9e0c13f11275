"""What torch.nn.RNNBase checks and keeps, for the drop-in layers that subclass torch.nn's.

rnnreg.LSTM / GRU / RNN are subclasses of torch.nn.LSTM / GRU / RNN (so ``isinstance`` and
type-based dispatch see them) that build their own parameters instead of running
``RNNBase.__init__``. This module gives them torch.nn's argument checks, in torch.nn's order and
with its exception types and messages, and the bookkeeping attributes torch.nn's methods read
(``mode``, ``proj_size``, ``_flat_weights_names``, ``_all_weights``).
"""

from __future__ import annotations

import math
import numbers
import operator
import warnings

import torch


def torch_mode(cell: str, nonlinearity: str) -> str:
    """torch.nn's ``mode`` string; the TRec Elman RNN, which torch.nn has not, gets its own."""
    if cell == "rnn":
        return f"RNN_{nonlinearity.upper()}"
    return cell.upper()


def check_torch_arguments(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                          bidirectional, proj_size=0) -> int:
    """torch.nn.RNNBase's checks, in its order, with its exception types and messages; returns
    ``num_layers`` as an int (torch.nn takes any integer, a NumPy one from a sweep too).

    An LSTM's ``proj_size`` > 0 passes here (torch.nn takes it) and is refused by the caller.
    ``bidirectional``, which torch.nn stores as given and refuses only at the first forward (a
    TypeError from its kernel), is refused here with the same type: ``bool("False")`` is True."""
    if proj_size and cell != "lstm":
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
    float(dropout)  # torch.nn converts first: None or a list is a TypeError there
    if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Number)
            or math.isnan(dropout) or not 0 <= dropout <= 1):
        raise ValueError("dropout should be a number in range [0, 1] representing the probability "
                         "of an element being zeroed")
    if dropout > 0 and num_layers == 1:
        # torch.nn's warning, word for word: the argument only acts between stacked layers.
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero "
                      f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                      f"num_layers={num_layers}", stacklevel=4)
    for name, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
        if not isinstance(flag, bool):  # "False" must not become True
            raise TypeError(f"{name} should be of type bool, got: {type(flag).__name__}")
    for name, size in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"{name} should be of type int, got: {type(size).__name__}")
        if size <= 0:
            raise ValueError(f"{name} must be greater than zero")
    try:
        num_layers = operator.index(num_layers)
    except TypeError:
        raise TypeError(f"num_layers should be of type int, got: {type(num_layers).__name__}") from None
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")
    return num_layers


def flat_weight_names(groups: list[tuple[str | None, ...]]) -> tuple[list[str], list[list[str]]]:
    """torch.nn's ``_flat_weights_names`` (w_ih, w_hh[, b_ih, b_hh] per layer and direction, the
    order its kernels take) and ``_all_weights`` (the same groups, with an LSTM's peephole
    weights last), from each direction's present parameter names in that order."""
    flat, every = [], []
    for names in groups:
        present = [n for n in names if n is not None]
        flat.extend(n for n in present if not n.startswith("weight_ch"))
        every.append(present)
    return flat, every


def check_torch_input(x: torch.Tensor, weight_dtype: torch.dtype, input_size: int) -> None:
    """torch.nn.RNNBase.check_input's checks on the (T, B, I) input, with its types and wording,
    plus the empty sequence its kernels refuse ("larger than 0"), on every path."""
    if x.dtype != weight_dtype and not torch._C._is_any_autocast_enabled():
        raise ValueError(f"RNN input dtype ({x.dtype}) does not match weight dtype ({weight_dtype}). "
                         f"Convert input: input.to({weight_dtype}), or convert model: model.to({x.dtype})")
    if x.shape[-1] != input_size:
        raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {input_size}, "
                           f"got {x.shape[-1]}")
    if x.shape[0] == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
