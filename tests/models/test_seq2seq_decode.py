"""Greedy and beam-search decoding of Seq2Seq, checked against teacher forcing and brute force."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from rnnreg.models.seq2seq import DecoderOutput, EncoderMemory, Seq2Seq
from rnnreg.models.seq2seq_decode import beam_search, greedy_decode, length_penalty_factor
from rnnreg.regularizers import set_mc_dropout

PAD, BOS, EOS = 0, 1, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def make(seed: int, vocab: int = 6, **kw) -> Seq2Seq:
    """A random model; a large init_range makes its distributions peaked, so the best sequences
    are far apart and ties cannot blur the comparisons."""
    torch.manual_seed(seed)
    options = dict(embedding_size=6, hidden_size=8, num_layers=2, init_range=1.5) | kw
    return Seq2Seq(7, vocab, **options).eval()


def sources(seed: int, batch: int = 4):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 6, (batch,), generator=gen)
    return torch.randint(3, 7, (5, batch), generator=gen), lengths


def teacher_forced_logp(model: Seq2Seq, source, lengths, tokens: torch.Tensor, count: torch.Tensor):
    """Sum of log p(token_t | BOS, tokens_<t) over each sequence's first ``count`` tokens, from
    one teacher-forced forward pass: an independent scorer for the decoders' outputs."""
    target_in = torch.cat([torch.full((1, tokens.shape[1]), BOS), tokens[:-1]])  # (L, B)
    with torch.no_grad():
        logp = torch.log_softmax(model(source, lengths, target_in).prediction, -1)  # (L, B, V)
    picked = logp.gather(2, tokens[..., None])[..., 0]  # (L, B)
    real = torch.arange(tokens.shape[0])[:, None] < count[None]
    return (picked * real).sum(0)


@pytest.mark.parametrize("cell, attention", [("lstm", "none"), ("gru", "dot"), ("rnn", "dot")])
def test_greedy_picks_argmax_and_scores_its_output(cell, attention):
    model = make(0, cell=cell, attention=attention)
    source, lengths = sources(1)
    out = greedy_decode(model, source, lengths, 6, BOS, EOS)
    assert out.tokens.shape == (6, 4)
    torch.testing.assert_close(out.scores, teacher_forced_logp(model, source, lengths, out.tokens, out.lengths))
    target_in = torch.cat([torch.full((1, 4), BOS), out.tokens[:-1]])  # (6, 4)
    argmax = model(source, lengths, target_in).prediction.argmax(-1)  # (6, 4)
    for b, n in enumerate(out.lengths.tolist()):
        assert torch.equal(out.tokens[:n, b], argmax[:n, b])
        assert torch.all(out.tokens[n:, b] == PAD)
        assert (out.tokens[n - 1, b] == EOS) or n == 6
        assert not bool((out.tokens[: n - 1, b] == EOS).any())


@pytest.mark.parametrize("attention", ["none", "dot"])
def test_beam_of_one_is_greedy(attention):
    model = make(2, attention=attention)
    source, lengths = sources(3, batch=6)
    greedy = greedy_decode(model, source, lengths, 7, BOS, EOS)
    beam = beam_search(model, source, lengths, 1, 7, BOS, EOS)
    assert torch.equal(beam.tokens, greedy.tokens) and torch.equal(beam.lengths, greedy.lengths)
    torch.testing.assert_close(beam.scores, greedy.scores)


def test_beam_finds_at_least_greedys_log_probability():
    """Not a theorem (a beam can prune the greedy path), but the property beam search is used
    for; checked on 3 random models x 8 sources with fixed seeds. Its own scores must also be the
    teacher-forced log-probabilities of what it returns."""
    improved = False
    for seed in range(3):
        model = make(10 + seed, vocab=8, attention="dot" if seed % 2 else "none")
        source, lengths = sources(seed, batch=8)
        greedy = greedy_decode(model, source, lengths, 6, BOS, EOS)
        beam = beam_search(model, source, lengths, 4, 6, BOS, EOS)
        assert torch.all(beam.scores >= greedy.scores - 1e-5)
        improved |= bool((beam.scores > greedy.scores + 1e-3).any())
        torch.testing.assert_close(beam.scores, teacher_forced_logp(model, source, lengths, beam.tokens,
                                                                     beam.lengths))
    assert improved, "the beam never beat greedy: these models cannot tell a beam from greedy"


class TableModel(nn.Module):
    """A decoder whose next-token scores are a random table indexed by the source id and the
    whole prefix: a distribution with no structure a search could lean on, whose best sequences
    vary in length and content. Its state (the prefix's code) is explicit, like Seq2Seq's."""

    def __init__(self, vocab: int, max_len: int, sources: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.vocab = vocab
        self.table = torch.randn(sources * (vocab + 1) ** max_len, vocab, generator=gen) * 2.0

    def encode(self, source, lengths):
        batch = source.shape[1]
        return [source[:1].long()[..., None]], EncoderMemory(torch.zeros(1, batch, 1),  # (1, B, 1)
                                                           torch.ones(1, batch, dtype=torch.bool))

    def decode(self, token, state, memory):
        code = state[0] * (self.vocab + 1) + token[..., None] + 1  # (1, B, 1): BOS + prefix, base V + 1
        return DecoderOutput(self.table[code[..., 0]], [code], [], [])  # (1, B, V)


def stepwise_logp(model, source, lengths, tokens: torch.Tensor, count: torch.Tensor):
    """Like teacher_forced_logp, through encode/decode one step at a time (any decodable model)."""
    state, memory = model.encode(source, lengths)
    token, total = torch.full((1, tokens.shape[1]), BOS), torch.zeros(tokens.shape[1])
    for t in range(tokens.shape[0]):
        out = model.decode(token, state, memory)
        logp = torch.log_softmax(out.logits[0], -1).gather(1, tokens[t, :, None])[:, 0]  # (B,)
        total += torch.where(t < count, logp, 0.0)
        token, state = tokens[t:t + 1], out.state
    return total


def brute_force(model, source, lengths, vocab: int, max_len: int, alpha: float = 0.0):
    """Best output per source by enumeration: (score, tokens (max_len,)) maximising score / lp
    over every sequence that ends at its first EOS within max_len tokens, or runs max_len tokens
    without one."""
    every = torch.tensor(list(itertools.product(range(vocab), repeat=max_len))).t()  # (L, N)
    tokens, counts = [], []
    for n in range(1, max_len + 1):
        prefix = every[:n]
        keep = ~(prefix[:-1] == EOS).any(0) & ((prefix[-1] == EOS) | (n == max_len))
        tokens.append(torch.cat([prefix, torch.full((max_len - n, every.shape[1]), PAD)])[:, keep])
        counts.append(torch.full((int(keep.sum()),), n))
    tokens, counts = torch.cat(tokens, 1), torch.cat(counts)  # (L, M), (M,)
    best = []
    for b in range(source.shape[1]):
        src, lens = source[:, b:b + 1].expand(-1, counts.shape[0]), lengths[b:b + 1].expand(counts.shape[0])
        with torch.no_grad():
            score = stepwise_logp(model, src, lens, tokens, counts)  # (M,)
        i = int((score / length_penalty_factor(counts, alpha)).argmax())
        best.append((float(score[i]), tokens[:, i]))
    return best


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_a_wide_beam_finds_the_exhaustive_argmax(alpha):
    vocab, max_len, batch = 4, 4, 8
    model = TableModel(vocab, max_len, batch, seed=5)
    source, lengths = torch.arange(batch)[None], torch.ones(batch, dtype=torch.int64)  # (1, B)
    best = brute_force(model, source, lengths, vocab, max_len, alpha)
    # The enumeration must be worth doing: greedy misses some optimum, optima differ in length.
    greedy = greedy_decode(model, source, lengths, max_len, BOS, EOS)
    assert any(not torch.equal(greedy.tokens[:, b], tokens) for b, (_, tokens) in enumerate(best))
    assert len({int((tokens != PAD).sum()) for _, tokens in best}) > 1
    beam = beam_search(model, source, lengths, vocab ** max_len, max_len, BOS, EOS, length_penalty=alpha)
    for b, (score, tokens) in enumerate(best):
        assert torch.equal(beam.tokens[:, b], tokens)
        assert abs(float(beam.scores[b]) - score) < 1e-4


def test_length_penalty_changes_the_exhaustive_choice():
    """GNMT's alpha trades probability for length: some optimum moves, and none gets shorter or
    more probable (a shorter or likelier winner would already have won without the penalty)."""
    model = TableModel(4, 4, 8, seed=5)
    source, lengths = torch.arange(8)[None], torch.ones(8, dtype=torch.int64)
    plain, penalised = (beam_search(model, source, lengths, 256, 4, BOS, EOS, length_penalty=a) for a in (0.0, 3.0))
    assert not torch.equal(plain.tokens, penalised.tokens)
    assert torch.all(penalised.lengths >= plain.lengths) and torch.all(penalised.scores <= plain.scores)


def test_real_model_wide_beam_matches_enumeration():
    vocab, max_len = 4, 3
    model = make(5, vocab=vocab, attention="dot")
    source, lengths = sources(6, batch=3)
    beam = beam_search(model, source, lengths, vocab ** max_len, max_len, BOS, EOS)
    for b, (score, tokens) in enumerate(brute_force(model, source, lengths, vocab, max_len)):
        assert torch.equal(beam.tokens[:, b], tokens)
        assert abs(float(beam.scores[b]) - score) < 1e-4


def test_length_penalty_factor_is_gnmt():
    lengths = torch.tensor([1, 7])
    torch.testing.assert_close(length_penalty_factor(lengths, 0.6), torch.tensor([1.0, 2.0 ** 0.6]))
    torch.testing.assert_close(length_penalty_factor(lengths, 0.0), torch.ones(2))


def test_decoding_restores_modes_and_refuses_mc_dropout():
    model = make(7, input_p=0.3, weight_p=0.3).train()
    source, lengths = sources(8)
    first = greedy_decode(model, source, lengths, 5, BOS, EOS)
    assert model.training
    torch.testing.assert_close(greedy_decode(model, source, lengths, 5, BOS, EOS).scores, first.scores)
    set_mc_dropout(model, True)
    with pytest.raises(ValueError, match="MC dropout"):
        beam_search(model, source, lengths, 2, 5, BOS, EOS)


@pytest.mark.parametrize("kwargs, match", [(dict(beam_size=0), "beam_size"), (dict(max_len=0), "max_len"),
                                           (dict(length_penalty=-1.0), "length_penalty"),
                                           (dict(pad=EOS), "pad")])
def test_bad_arguments_are_refused(kwargs, match):
    model = make(0)
    source, lengths = sources(0)
    args = dict(beam_size=2, max_len=4) | kwargs
    with pytest.raises(ValueError, match=match):
        beam_search(model, source, lengths, args.pop("beam_size"), args.pop("max_len"), BOS, EOS, **args)
