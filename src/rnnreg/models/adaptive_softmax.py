"""The adaptive softmax (Grave et al. 2017, "Efficient softmax approximation for GPUs") for word
ids in any order, optionally tied to the embedding.

``torch.nn.AdaptiveLogSoftmaxWithLoss`` holds the parameters and gives the full log-probabilities:
a head softmax over the ``cutoffs[0]`` most frequent words plus one entry per tail cluster, and for
each cluster a projection to ``in / div_value^(i+1)`` units and its own softmax, so a step computes
V-sized logits only for the few targets that fall in each cluster. Its log-probabilities are exact
(they sum to one over V).

Three things are ours:

- **The targets' log-probabilities** (:meth:`AdaptiveSoftmax.token_log_probs`): torch's forward
  step for step, with the log-softmaxes in float32, so that it runs under autocast.

- **Frequency order.** The clusters only save work if they group words by frequency, but rnnreg
  numbers words in first-seen order. ``rank`` (a buffer, stored with the weights) maps a word id to
  its position in the training split's frequency order; the clusters are cut in that order.
- **Tying** (Merity et al. 2018, sec. 4.2, tie the embedding to the output of their split
  softmax; Press & Wolf 2017). With ``div_value = 1`` every word's output vector has the
  embedding's size: the head's shortlist rows and each tail's output matrix, in frequency order.
  :meth:`embed` looks a word up in the piece that holds it, so the embedding has no parameters of
  its own and both uses train the same vectors. (Gathering per piece, not concatenating the
  pieces into a (V, E) matrix first, is 10x faster at WikiText-103's size on a CPU: the copy and
  its gradient move 2 x 427 MB per step.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..regularizers.masks import dropout_mask


def last_tail_units(in_features: int, div_value: float, clusters: int) -> int:
    """The units of the last tail cluster's projection, as torch sizes it: in // div^clusters."""
    return int(in_features // div_value ** clusters)


class AdaptiveSoftmax(nn.AdaptiveLogSoftmaxWithLoss):
    """Adaptive softmax over word ids in any order.

    frequency_order: word ids from most to least frequent in the training split (V of them); None
    keeps the ids' own order. cutoffs, div_value: as torch's, counted in frequency order. The
    head has a bias (the shortlist's unigram log-frequencies are worth a parameter each).
    """

    def __init__(self, in_features: int, vocab_size: int, cutoffs: Sequence[int], *, div_value: float = 4.0,
                 frequency_order: Sequence[int] | None = None) -> None:
        smallest = last_tail_units(in_features, div_value, len(cutoffs))
        if smallest < 1:  # torch builds it, but the last cluster's logits would be constant zeros
            raise ValueError(f"the last tail cluster's projection would have {in_features} // "
                             f"{div_value}**{len(cutoffs)} = {smallest} units; lower div_value or use fewer cutoffs")
        super().__init__(in_features, vocab_size, list(cutoffs), div_value=div_value, head_bias=True)
        order = torch.arange(vocab_size) if frequency_order is None else torch.as_tensor(frequency_order)
        if order.shape != (vocab_size,) or not torch.equal(order.sort().values, torch.arange(vocab_size)):
            raise ValueError(f"frequency_order must list each of the {vocab_size} word ids once")
        rank = torch.empty_like(order)
        rank[order] = torch.arange(vocab_size)  # rank[id] = its place in frequency order
        self.register_buffer("rank", rank)

    def token_log_probs(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """log p(target) (N,) of each of N hidden states (N, H), computed without V-sized logits
        for the targets outside the head, in float32 at least (float64 stays float64).

        torch's forward, step for step, but with each log-softmax taken in that dtype: under
        CPU autocast the projections and log-softmaxes return bf16 / fp16, and torch's forward
        then fails to copy a cluster's log-probabilities into its float32 output (index_copy_:
        "expected to have the same dtype"); the loss is float32 anyway."""
        acc = torch.promote_types(hidden.dtype, torch.float32)
        ranks = self.rank[targets]  # (N,) places in frequency order
        head = ranks.clone()  # (N,) each row's head column: its word in the shortlist, else its cluster
        out = torch.zeros(ranks.shape, dtype=acc, device=hidden.device)  # (N,) the tail log-probs
        bounds = [0, *self.cutoffs]  # self.cutoffs ends with V
        for i, tail in enumerate(self.tail):
            low, high = bounds[i + 1], bounds[i + 2]
            rows = ((ranks >= low) & (ranks < high)).nonzero().squeeze(1)  # (n,)
            if rows.numel() == 0:
                continue
            head.index_fill_(0, rows, self.shortlist_size + i)
            log_probs = F.log_softmax(tail(hidden.index_select(0, rows)).to(acc), dim=1)  # (n, cluster)
            out.index_copy_(0, rows, log_probs.gather(1, (ranks[rows] - low).unsqueeze(1)).squeeze(1))
        head_log_probs = F.log_softmax(self.head(hidden).to(acc), dim=1)  # (N, shortlist + clusters)
        return out + head_log_probs.gather(1, head.unsqueeze(1)).squeeze(1)

    def full_log_probs(self, hidden: Tensor) -> Tensor:
        """(N, V) log-probabilities over every word, in word-id order."""
        return self.log_prob(hidden)[:, self.rank]  # frequency order -> id order

    def output_vectors(self) -> list[Tensor]:
        """The words' output vectors, one (size, E) piece per cluster, in frequency order: the
        head's shortlist rows, then each tail's output matrix (needs div_value = 1)."""
        if self.div_value != 1:
            raise ValueError("tying the adaptive softmax to the embedding needs div_value = 1")
        return [self.head.weight[:self.shortlist_size]] + [tail[1].weight for tail in self.tail]

    def embedding_weight(self) -> Tensor:
        """(V, E) output vectors in word-id order: the whole tied embedding matrix (a copy)."""
        return torch.cat(self.output_vectors())[self.rank]  # (V, E) in frequency order -> id order

    def embed(self, tokens: Tensor, p: float = 0.0, training: bool = False) -> Tensor:
        """(*) word ids -> (*, E) tied embeddings, ``embedding_weight()[tokens]`` without forming
        it. With ``training`` and ``p`` > 0, embedding dropout (Gal & Ghahramani 2016): each word
        type is dropped with probability ``p`` wherever it occurs, the rest scaled by 1/(1-p)."""
        ranks = self.rank[tokens]  # (*)
        bounds = [0, *self.cutoffs]
        pieces = self.output_vectors()
        out = pieces[0].new_zeros(*tokens.shape, self.in_features)  # (*, E)
        for low, high, weight in zip(bounds, bounds[1:], pieces):
            inside = (ranks >= low) & (ranks < high)
            out = out.index_put((inside,), F.embedding(ranks[inside] - low, weight))
        if not training or p == 0.0:
            return out
        mask = dropout_mask((self.n_classes, 1), p, out)  # (V, 1): one draw per word type
        return out * mask[ranks]  # (*, 1), broadcast over E

    def extra_repr(self) -> str:
        return f"cutoffs={self.cutoffs[:-1]}, div_value={self.div_value}"
