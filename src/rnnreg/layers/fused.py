"""The fused path: one recurrent layer on the torch.nn kernels (oneDNN on CPU, cuDNN on GPU).

We call the same ATen operators torch.nn.LSTM/GRU/RNN call (``torch.lstm``, ``torch.gru``,
``torch.rnn_tanh``, ``torch.rnn_relu``) with weights we computed this step (weight-dropped or
noised), one layer at a time so every layer's output sequence is available to penalties and to
the between-layer dropouts. Nothing inside torch.nn is patched.

Under ``torch.compile`` the LSTM's ATen call runs eagerly (a graph break, where torch.nn.LSTM
breaks too): traced, torch 2.13 lowers ``torch.lstm`` on the CPU to ``aten.mkldnn_rnn_layer`` with
arguments that op then rejects (``TypeError: expected Tensor()``), which also makes
torch.nn.LSTM fail under ``fullgraph=True``. The GRU and Elman calls trace, as torch.nn's do.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..kernels.precision import onednn_bf16_lstm, outside_cpu_autocast

# oneDNN's CPU LSTM has no fp16 primitive, and no bf16 one on some CPUs (AVX2-only ones), where
# torch.nn.LSTM fails under such autocast: computed in float32 there, handed on in autocast's
# dtype. GRU and the Elman RNNs run as torch.nn's do.
_LSTM = outside_cpu_autocast(bf16_passthrough=onednn_bf16_lstm)(torch.lstm)
_OPS = {"lstm": torch.compiler.disable(_LSTM), "gru": torch.gru, "tanh": torch.rnn_tanh, "relu": torch.rnn_relu}
# torch.lstm's packed overload is outside autocast's list, so handed through under bf16 it ran on
# the inputs' dtypes and returned float32 where every other path returns bf16: it always takes
# the float32 route (autocast's dtype handed on), under bf16 as under fp16.
_PACKED_OPS = {**_OPS, "lstm": torch.compiler.disable(outside_cpu_autocast()(torch.lstm))}


def fused_layer(op: str, x: Tensor, lengths: Tensor | None, h0: Tensor, c0: Tensor | None,
                flat_weights: list[Tensor], has_bias: bool, bidirectional: bool, train: bool
                ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run one layer (both directions when bidirectional).

    x (T, B, I); h0, c0 (D, B, H); flat_weights in torch.nn order per direction:
    w_ih, w_hh[, b_ih, b_hh]. ``train``: let the kernel keep what backward needs (cuDNN refuses
    a backward otherwise). Returns output (T, B, D*H), h_n (D, B, H), c_n (D, B, H) or None.
    Padded steps of the output are zero, as pad_packed_sequence leaves them.
    """
    fn = _OPS[op]
    if lengths is None:
        hx = [h0, c0] if op == "lstm" else h0
        res = fn(x, hx, flat_weights, has_bias, 1, 0.0, train, bidirectional, False)
        return res[0], res[1], res[2] if op == "lstm" else None
    fn = _PACKED_OPS[op]
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    order, undo = packed.sorted_indices, packed.unsorted_indices
    h0s = h0.index_select(1, order)  # (D, B, H) in the packed (length-sorted) order
    hx = [h0s, c0.index_select(1, order)] if op == "lstm" else h0s
    res = fn(packed.data, packed.batch_sizes, hx, flat_weights, has_bias, 1, 0.0, train, bidirectional)
    out, _ = pad_packed_sequence(PackedSequence(res[0], packed.batch_sizes, order, undo),
                                 total_length=x.shape[0])  # (T, B, D*H), caller's order
    c_n = res[2].index_select(1, undo) if op == "lstm" else None
    return out, res[1].index_select(1, undo), c_n
