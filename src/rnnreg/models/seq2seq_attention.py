"""Global dot-product attention for the sequence-to-sequence decoder (Luong et al. 2015).

Luong, Pham & Manning (2015), "Effective approaches to attention-based neural machine
translation", sec. 3.1: at each target step t the decoder's top hidden state h_t scores every
encoder output h_s with the ``dot`` score h_t . h_s (eq. 8), a softmax over the source gives the
alignment a_t (eq. 7), the context is c_t = sum_s a_t(s) h_s, and the attentional state is
h~_t = tanh(W_c [c_t; h_t]) (eq. 5), which the output layer reads. Without input feeding
(sec. 3.3) h~_t does not enter the recurrence, so all steps of a teacher-forced target can be
attended in one batched product, and one step at a time gives the same numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DotAttention(nn.Module):
    """h~ = tanh(W_c [c; h]) with c the dot-attention context over the valid source steps."""

    def __init__(self, size: int) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        # Luong et al. eq. 5 has no bias on W_c.
        self.combine = nn.Linear(2 * size, size, bias=False)

    def forward(self, query: Tensor, keys: Tensor, valid: Tensor) -> Tensor:
        """query (T, B, H) decoder states; keys (S, B, H) encoder outputs; valid (S, B) bool, True
        on real source steps (every sequence has at least one). Returns (T, B, H)."""
        scores = torch.einsum("tbh,sbh->tbs", query, keys)  # (T, B, S)
        scores = scores.masked_fill(~valid.t().unsqueeze(0), float("-inf"))  # (S, B) -> (1, B, S)
        weights = torch.softmax(scores, dim=-1)  # (T, B, S)
        context = torch.einsum("tbs,sbh->tbh", weights, keys)  # (T, B, H)
        return torch.tanh(self.combine(torch.cat([context, query], dim=-1)))
