"""The continuous cache pointer (Grave et al. 2016): a trained language model's next-word
distribution mixed, at evaluation time only, with a distribution over the words that followed
similar hidden states in the recent text. Nothing is trained.

Grave, Joulin & Usunier 2016 (ICLR 2017), "Improving neural language models with a continuous
cache", the cache distribution and its linear interpolation with the model's (their numbering of
the equations differs between versions, so they are named here, not numbered): the cache holds
the pairs (h_i, x_{i+1}) of the last ``window`` positions, and

    cache:        p_cache(w | h_1..t, x_1..t)  ∝  sum_{i in [t - window, t), x_{i+1} = w} exp(theta h_t . h_i)
    interpolation: p(w | h_1..t, x_1..t)  =  (1 - lambda) p_vocab(w | h_t) + lambda p_cache(w | h_1..t, x_1..t)

h_t is the last recurrent layer's output, the vector the output layer reads (``rnn_outs[-1]``,
the last LSTM's raw output, in awd-lstm-lm's pointer.py; Merity et al. 2017 sec. 7, "Pointer
models"): ``LMOutput.raw[-1]``, equal to ``dropped[-1]`` in eval mode. Only the target's
probability is needed, so neither distribution is formed over the vocabulary: p_vocab(y_t) is the
model's ``out.nll`` (exact for every output layer), and with s_ti = h_t . h_i

    log p_cache(y_t) = logsumexp_{i in cache, x_{i+1} = y_t} theta s_ti - logsumexp_{i in cache} theta s_ti,

in float64, mixed in log space (``logaddexp``), so lambda = 0 gives the plain evaluation exactly.
A word not in the cache has p_cache = 0; the very first token, with an empty cache, gets p_vocab.

One stream of text (batch size 1), as both papers: the cache is the text just read. The state and
the cache carry across BPTT windows, so the window length changes only the speed. One pass of the
model scores a whole grid of (theta, lambda) at once (:func:`cache_pointer_scores`), which is what
makes the search (:mod:`.cache_search`) cheap. Differences from pointer.py, whose cache is used
only at positions t > window: it scores the first ``window`` + 1 tokens of a split, and the first
token of each later chunk of ``--bptt`` tokens, with p_vocab alone; here the cache is used as soon
as it holds one position (the cache sum runs over every i < t), so the result does not depend on
the chunk length. The last window of a split weighs by its length, as in :mod:`.lm_evaluation`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.batching import get_batch

Progress = Callable[[int, int], None]   # (tokens done, tokens in all)
_BLOCK = 1 << 22                         # query rows x cached keys scored at once (float64: 32 MiB)


def check_cache_settings(window: int, thetas: Sequence[float], lambdas: Sequence[float]) -> None:
    """ValueError unless window >= 1, every theta >= 0 and every lambda in [0, 1] (finite)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if not thetas or any(not math.isfinite(t) or t < 0 for t in thetas):
        raise ValueError(f"theta must be finite and >= 0, got {list(thetas)}")
    if not lambdas or any(not 0.0 <= lam <= 1.0 for lam in lambdas):
        raise ValueError(f"lambda must be in [0, 1], got {list(lambdas)}")


def one_stream(source: Tensor) -> Tensor:
    """(N,) or (N, 1) token ids -> (N, 1): the cache reads one stream of text."""
    if source.dim() == 1:
        source = source[:, None]                       # (N,) -> (N, 1)
    if source.dim() != 2 or source.shape[1] != 1:
        raise ValueError(f"the cache pointer reads one stream of text, (N,) or (N, 1) token ids "
                         f"(batch size 1, as Grave et al. 2016); got shape {tuple(source.shape)}")
    return source


class PointerCache:
    """The last ``window`` hidden states h_i (float64) and the words x_{i+1} that followed them,
    kept from one BPTT window to the next."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.keys: Tensor | None = None   # (M, H), M <= window
        self.words: Tensor | None = None  # (M,)

    def log_probs(self, hidden: Tensor, targets: Tensor, thetas: Tensor) -> tuple[Tensor, Tensor]:
        """Score then remember one window: hidden (T, H) h_t, targets (T,) x_{t+1}, thetas (K,).
        Returns (log p_cache(target) (K, T) float64, -inf where the cache lacks the target word;
        cached (T,) bool, False where the cache was empty)."""
        hidden = hidden.double()
        held = 0 if self.keys is None else self.keys.shape[0]
        keys = hidden if self.keys is None else torch.cat([self.keys, hidden])  # (M + T, H)
        words = targets if self.words is None else torch.cat([self.words, targets])  # (M + T,)
        rows = max(1, _BLOCK // keys.shape[0])
        parts = [self._block(keys, words, hidden[a:a + rows], targets[a:a + rows], held + a, thetas)
                 for a in range(0, hidden.shape[0], rows)]
        self.keys, self.words = keys[-self.window:], words[-self.window:]
        cached = held + torch.arange(hidden.shape[0], device=hidden.device) > 0  # (T,)
        return torch.cat(parts, dim=1), cached

    def _block(self, keys: Tensor, words: Tensor, queries: Tensor, targets: Tensor, first: int,
               thetas: Tensor) -> Tensor:
        """(K, R) log p_cache for R queries whose own positions among ``keys`` start at ``first``."""
        position = first + torch.arange(queries.shape[0], device=keys.device)[:, None]  # (R, 1)
        key = torch.arange(keys.shape[0], device=keys.device)[None, :]                 # (1, M + T)
        # Query t sees the keys of the `window` positions before it, never its own (i < t).
        seen = (key < position) & (key >= position - self.window)                       # (R, M + T)
        hits = seen & (words[None, :] == targets[:, None])                              # (R, M + T)
        scores = queries @ keys.T                                                       # (R, M + T) h_t . h_i
        out = []
        for theta in thetas:
            logits = theta * scores
            every = logits.masked_fill(~seen, -math.inf).logsumexp(dim=1)               # (R,)
            match = logits.masked_fill(~hits, -math.inf).logsumexp(dim=1)
            # An empty cache (no key seen) gives -inf - -inf = nan: read as p_cache = 0.
            out.append(torch.where(torch.isfinite(every), match - every, -math.inf))
        return torch.stack(out)                                                         # (K, R)


def mix(vocab_log_probs: Tensor, cache_log_probs: Tensor, cached: Tensor, lambdas: Tensor) -> Tensor:
    """log((1 - lambda) p_vocab + lambda p_cache), the interpolation, in log space: vocab (T,), cache (K, T),
    cached (T,), lambdas (L,) -> (K, L, T) float64. Where the cache is empty: log p_vocab."""
    vocab = vocab_log_probs.double()[None, None, :]                                    # (1, 1, T)
    lam = lambdas.double()[None, :, None]                                              # (1, L, 1)
    mixed = torch.logaddexp(torch.log1p(-lam) + vocab, torch.log(lam) + cache_log_probs[:, None, :])
    return torch.where(cached, mixed, vocab)


@dataclass(frozen=True)
class CacheScores:
    """One pass over a text: mean negative log-likelihood per token in nats of the model alone
    (``plain``, = :func:`~rnnreg.tasks.lm_evaluation.evaluate` at batch size 1) and of each
    mixture (``cache[(theta, lambda)]``), over ``tokens`` predicted tokens."""
    plain: float
    cache: dict[tuple[float, float], float]
    tokens: int


@torch.no_grad()
def cache_pointer_scores(model: nn.Module, source: Tensor, *, window: int, thetas: Sequence[float],
                         lambdas: Sequence[float], bptt: int, progress: Progress | None = None) -> CacheScores:
    """Score ``source`` ((N,) or (N, 1) token ids) with the cache pointer for every (theta, lambda)
    pair of the grid ``thetas`` x ``lambdas`` in one pass of ``model`` (put in eval mode and left
    there), windows of ``bptt`` tokens; ``progress(done, total)`` after each window."""
    check_cache_settings(window, thetas, lambdas)
    source = one_stream(source)
    model.eval()
    device = source.device
    theta_t = torch.tensor(list(thetas), dtype=torch.float64, device=device)   # (K,)
    lambda_t = torch.tensor(list(lambdas), dtype=torch.float64, device=device)  # (L,)
    cache, state = PointerCache(window), None
    totals = torch.zeros(len(thetas), len(lambdas), dtype=torch.float64, device=device)  # (K, L) summed NLL
    plain, count, total = 0.0, 0, source.shape[0] - 1
    for i in range(0, total, bptt):
        x, y = get_batch(source, i, bptt)                                    # (T, 1), (T, 1)
        out = model(x, state, targets=y)
        state = out.state
        plain += out.nll.double().sum().item()                               # as lm_evaluation.evaluate
        cache_lp, cached = cache.log_probs(out.raw[-1][:, 0], y[:, 0], theta_t)  # (T, 1, H) -> (T, H)
        totals -= mix(-out.nll[:, 0], cache_lp, cached, lambda_t).sum(dim=2)  # (K, L)
        count += y.numel()
        if progress is not None:
            progress(count, total)
    grid = {(float(t), float(lam)): totals[a, b].item() / max(count, 1)
            for a, t in enumerate(thetas) for b, lam in enumerate(lambdas)}
    return CacheScores(plain / max(count, 1), grid, count)


def cache_pointer_nll(model: nn.Module, source: Tensor, *, window: int, theta: float, lambda_: float, bptt: int,
                      progress: Progress | None = None) -> float:
    """Mean negative log-likelihood per token (nats) of ``source`` ((N,) or (N, 1)) under the
    model mixed with its continuous cache of ``window`` positions (Grave et al. 2016)."""
    scores = cache_pointer_scores(model, source, window=window, thetas=(theta,), lambdas=(lambda_,), bptt=bptt,
                                  progress=progress)
    return scores.cache[(float(theta), float(lambda_))]
