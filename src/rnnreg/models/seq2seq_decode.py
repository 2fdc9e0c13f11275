"""Decoding a :class:`rnnreg.models.seq2seq.Seq2Seq`: greedy and beam search, one token at a time.

Both encode the source once and then call ``model.decode`` on one token per sequence (or per
beam), carrying the explicit recurrent state. A hypothesis ends at its first EOS or after
``max_len`` tokens; its score is the sum of the model's log-probabilities of its tokens (EOS
included), taken over the whole vocabulary. The model runs in eval mode under no_grad and its
modes are put back afterwards. MC dropout is refused: it would draw new locked and weight-drop
masks at every step, which no training-time forward pass ever does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..regularizers.monte_carlo import eval_mode
from .language_model import check_tokens
from .seq2seq import reorder_state


@dataclass(frozen=True)
class Decoded:
    """tokens (max_len, B) int64, each sequence up to and including its EOS, then ``pad``;
    lengths (B,) tokens up to and including EOS (max_len when none came); scores (B,) the sum of
    the tokens' log-probabilities."""
    tokens: Tensor
    lengths: Tensor
    scores: Tensor


def _check(model: nn.Module, source: Tensor, max_len: int, eos: int, pad: int, beam_size: int = 1) -> None:
    check_tokens(source)
    for name, value in (("max_len", max_len), ("beam_size", beam_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if eos == pad:
        raise ValueError(f"eos and pad must differ (pad fills the steps after EOS), both are {eos}")
    if any(getattr(m, "mc_dropout", False) is True for m in model.modules()):
        raise ValueError("model has MC dropout on, which would draw new masks at every decoding step; "
                         "switch it off with rnnreg.regularizers.set_mc_dropout(model, False)")


def _padded(tokens: list[Tensor], max_len: int, pad: int) -> Tensor:
    """Stack per-step tokens [(B,) ...] into (max_len, B), padding the steps never taken."""
    out = torch.stack(tokens)  # (L, B)
    return F.pad(out, (0, 0, 0, max_len - out.shape[0]), value=pad)  # (L, B) -> (max_len, B)


def greedy_decode(model: nn.Module, source: Tensor, lengths: Tensor, max_len: int, bos: int,
                  eos: int, *, pad: int = 0) -> Decoded:
    """Take the most likely token at every step. source (S, B) ids, lengths (B,)."""
    _check(model, source, max_len, eos, pad)
    with eval_mode(model), torch.no_grad():
        state, memory = model.encode(source, lengths)
        batch, device = source.shape[1], memory.outputs.device
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        count = torch.zeros(batch, dtype=torch.int64, device=device)
        scores = torch.zeros(batch, device=device)
        token, steps = torch.full((1, batch), bos, dtype=torch.int64, device=device), []
        for _ in range(max_len):
            out = model.decode(token, state, memory)
            logp = torch.log_softmax(out.logits[0].float(), dim=-1)  # (B, V)
            best = logp.argmax(dim=-1)  # (B,)
            scores += torch.where(done, 0.0, logp.gather(1, best[:, None])[:, 0])
            count += (~done).long()
            best = best.masked_fill(done, pad)
            steps.append(best)
            done = done | (best == eos)
            if bool(done.all()):
                break
            token, state = best[None], out.state  # (B,) -> (1, B)
        return Decoded(_padded(steps, max_len, pad), count, scores)


def length_penalty_factor(lengths: Tensor, alpha: float) -> Tensor:
    """Wu et al. (2016, GNMT), eq. 14: lp(Y) = ((5 + |Y|) / 6) ** alpha; scores are divided by it."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def beam_search(model: nn.Module, source: Tensor, lengths: Tensor, beam_size: int, max_len: int,
                bos: int, eos: int, *, length_penalty: float = 0.0, pad: int = 0) -> Decoded:
    """Keep the ``beam_size`` most likely hypotheses per sequence at every step.

    A finished hypothesis stays in the beam with its score frozen (it continues with ``pad`` at no
    cost), so with ``length_penalty=0`` it competes fairly with the live ones, whose scores can
    only fall; with beams large enough to keep every hypothesis the result is the exact argmax.
    The search ranks by log-probability; ``length_penalty`` (GNMT's alpha, see
    :func:`length_penalty_factor`) only ranks the final beam. ``Decoded.scores`` are the
    unnormalised log-probabilities.
    """
    _check(model, source, max_len, eos, pad, beam_size)
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise ValueError(f"length_penalty must be a number >= 0, got {length_penalty!r}")
    with eval_mode(model), torch.no_grad():
        return _search(model, source, lengths, beam_size, max_len, bos, eos, float(length_penalty), pad)


def _extend(scores: Tensor, done: Tensor, logp: Tensor, pad: int) -> tuple[Tensor, Tensor, Tensor]:
    """The K best one-token extensions of each sequence's beam: scores (B, K), done (B, K),
    logp (B, K, V). A finished hypothesis has one extension, ``pad`` at no cost. Returns the new
    scores, the beam each came from and the token it added, each (B, K)."""
    batch, k, vocab = logp.shape
    frozen = torch.full_like(logp[0, 0], float("-inf"))
    frozen[pad] = 0.0
    logp = torch.where(done[..., None], frozen, logp)
    total = (scores[..., None] + logp).view(batch, k * vocab)  # (B, K, V) -> (B, K V)
    best, index = total.topk(k, dim=-1)  # (B, K)
    return best, index // vocab, index % vocab


def _search(model: nn.Module, source: Tensor, lengths: Tensor, k: int, max_len: int, bos: int,
            eos: int, alpha: float, pad: int) -> Decoded:
    state, memory = model.encode(source, lengths)
    batch, device = source.shape[1], memory.outputs.device
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B K,): beam b*K + j reads sequence b
    state, memory = reorder_state(state, rows), memory.select(rows)
    # One live hypothesis at the start: k copies of it would fill the beam with duplicates.
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    done = torch.zeros(batch, k, dtype=torch.bool, device=device)
    count = torch.zeros(batch, k, dtype=torch.int64, device=device)
    history = torch.empty(0, batch, k, dtype=torch.int64, device=device)
    token = torch.full((1, batch * k), bos, dtype=torch.int64, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * k  # (B, 1)
    for _ in range(max_len):
        out = model.decode(token, state, memory)
        logp = torch.log_softmax(out.logits[0].float(), dim=-1).view(batch, k, -1)  # (B K, V) -> (B, K, V)
        scores, origin, chosen = _extend(scores, done, logp, pad)
        history = torch.cat([history.gather(2, origin[None].expand_as(history)), chosen[None]])  # (t+1, B, K)
        count = count.gather(1, origin) + (~done.gather(1, origin)).long()
        # A hypothesis at -inf (an unfilled slot of a small first beam) is as good as finished.
        done = done.gather(1, origin) | (chosen == eos) | torch.isneginf(scores)
        if bool(done.all()):
            break
        state = reorder_state(out.state, (origin + offsets).view(-1))  # (B, K) -> (B K,)
        token = chosen.view(1, batch * k)  # (B, K) -> (1, B K)
    best = (scores / length_penalty_factor(count, alpha)).argmax(dim=-1)  # (B,)
    pick = torch.arange(batch, device=device)
    steps = list(history[:, pick, best])  # (t, B) -> t tensors (B,)
    return Decoded(_padded(steps, max_len, pad), count[pick, best], scores[pick, best])
