"""Mixture of softmaxes (Yang et al. 2017, "Breaking the softmax bottleneck", eq. 2-3).

A single softmax over ``h W^T`` gives a log-probability matrix of rank at most d + 1, too low for
natural language; a mixture of K softmaxes is not so limited:

    P(x | c) = sum_k pi_k(c) softmax(w^T tanh(W_k h))_x,   pi(c) = softmax(W_pi h)

Every expert k has its own context vector ``tanh(W_k h)`` of the embedding size E, decoded by the
same (V, E) matrix, which AWD-LSTM-MoS ties to the embedding. Locked dropout (``latent_p``, the
reference code's ``dropoutl``) drops the experts' context vectors, the same units at every step.
The result is returned as log-probabilities, which are also valid logits: ``log_softmax`` of them is
themselves, so cross-entropy, sampling and MC-dropout averaging treat them like any logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.base import positive_int
from ..regularizers.locked_dropout import LockedDropout


class MixtureOfSoftmaxes(nn.Module):
    """(T, B, H) hidden states -> (T, B, V) float32 log-probabilities of a K-expert mixture.

    in_features: H, the last layer's size. embedding_size: E, the size of each expert's context
    and of the decoder's rows. experts: K. latent_p: locked dropout on the contexts.
    """

    def __init__(self, in_features: int, embedding_size: int, vocab_size: int, *, experts: int,
                 latent_p: float = 0.0) -> None:
        super().__init__()
        self.experts = positive_int("experts", experts)
        self.embedding_size = positive_int("embedding_size", embedding_size)
        self.prior = nn.Linear(in_features, self.experts, bias=False)  # W_pi: the mixture weights
        self.latent = nn.Linear(in_features, self.experts * self.embedding_size)  # the K W_k at once
        self.latent_dropout = LockedDropout(latent_p)
        self.decoder = nn.Linear(self.embedding_size, positive_int("vocab_size", vocab_size))

    def forward(self, hidden: Tensor) -> Tensor:
        steps, batch, _ = hidden.shape
        contexts = self.latent_dropout(torch.tanh(self.latent(hidden)))  # (T, B, K * E)
        contexts = contexts.view(steps, batch, self.experts, self.embedding_size)  # (T, B, K, E)
        # Each expert's softmax in float32: a bf16/fp16 log-sum-exp over V loses the tail.
        expert_log_probs = F.log_softmax(self.decoder(contexts).float(), dim=-1)  # (T, B, K, V)
        log_prior = F.log_softmax(self.prior(hidden).float(), dim=-1)  # (T, B, K)
        # log sum_k pi_k p_k, computed stably as a log-sum-exp over the experts.
        return torch.logsumexp(expert_log_probs + log_prior.unsqueeze(-1), dim=2)  # (T, B, V)

    def extra_repr(self) -> str:
        return f"experts={self.experts}"
