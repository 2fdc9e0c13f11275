"""The seq2seq task: generators, batches, loss, metrics (against an oracle) and a tiny training run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rnnreg.models.seq2seq import EncoderMemory, Seq2Seq
from rnnreg.tasks.seq2seq import Seq2SeqTask, exact_matches
from rnnreg.tasks.seq2seq_tasks import (ALPHABET, BOS, EOS, PAD, CharVocab, problem_vocab, sample_pairs,
                                        to_batch)


pytestmark = pytest.mark.usefixtures("one_thread")


def pairs(problem, count=200, seed=0, **kw):
    options = dict(min_length=2, max_length=6, num_symbols=10) | kw
    return sample_pairs(problem, count, generator=torch.Generator().manual_seed(seed), **options)


def test_copy_and_reverse_targets():
    for problem, expected in (("copy", lambda s: s), ("reverse", lambda s: s[::-1])):
        drawn = pairs(problem, num_symbols=5)
        assert all(target == expected(source) for source, target in drawn)
        assert {len(s) for s, _ in drawn} == set(range(2, 7))
        assert set("".join(s for s, _ in drawn)) == set(ALPHABET[:5])


@pytest.mark.parametrize("base", [10, 7, 16])
def test_addition_targets_are_sums(base):
    drawn = pairs("addition", min_length=1, max_length=4, num_symbols=base)
    for source, target in drawn:
        a, b = source.split("+")
        assert int(target, base) == int(a, base) + int(b, base)
        assert set(source) <= set(ALPHABET[:base] + "+")
        for number in (a, b, target):
            assert 1 <= len(number) and (len(number) == 1 or number[0] != "0")
        assert 1 <= len(a) <= 4 and 1 <= len(b) <= 4
    if base == 10:
        assert all(t == str(int(s.split("+")[0]) + int(s.split("+")[1])) for s, t in drawn)
    assert {len(s.split("+")[0]) for s, _ in drawn} == {1, 2, 3, 4}


def test_generators_are_pure_functions_of_the_generator():
    for problem in ("copy", "addition"):
        assert pairs(problem, seed=3) == pairs(problem, seed=3)
        assert pairs(problem, seed=3) != pairs(problem, seed=4)


def test_batch_layout():
    vocab = problem_vocab("addition", 10)
    drawn = [("12+345", "357"), ("0+0", "0")]
    batch = to_batch(drawn, vocab)
    assert batch["source"].shape == (6, 2) and batch["target_in"].shape == (4, 2)
    assert batch["source_lengths"].tolist() == [6, 3] and batch["target_lengths"].tolist() == [4, 2]
    assert batch["target_in"][0].tolist() == [BOS, BOS]
    assert batch["target_out"][:, 1].tolist() == [vocab.encode("0")[0], EOS, PAD, PAD]
    assert torch.equal(batch["target_in"][1:4, 0], batch["target_out"][0:3, 0])
    assert batch["source"][3:, 1].tolist() == [PAD] * 3
    assert [vocab.decode(batch["target_out"][:, b]) for b in range(2)] == ["357", "0"]
    assert vocab.decode(batch["source"][:, 0]) == "12+345"
    assert len(vocab) == 3 + 11
    with pytest.raises(ValueError, match="character"):
        CharVocab("01").encode("012")


def test_training_batches_resume_exactly_and_eval_sets_are_fixed():
    task = Seq2SeqTask("reverse", min_length=1, max_length=5, train_size=100, valid_size=30, test_size=20)
    assert task.num_train_batches(32) == 4
    first = task.train_batch(2, 1, 32)
    assert all(torch.equal(first[k], v) for k, v in task.train_batch(2, 1, 32).items())
    assert not torch.equal(task.train_batch(2, 2, 32)["source"], first["source"][:, :32])
    assert task.train_batch(2, 3, 32)["source"].shape[1] == 4
    with pytest.raises(ValueError, match="index"):
        task.train_batch(1, 4, 32)
    again = Seq2SeqTask("reverse", min_length=1, max_length=5, train_size=100, valid_size=30, test_size=20)
    assert task.eval_pairs("valid") == again.eval_pairs("valid") != again.eval_pairs("test")[:30]
    assert [b["source"].shape[1] for b in task.eval_batches("valid", 16)] == [16, 14]
    assert sum(b["source"].shape[1] for b in task.eval_batches("test", 7)) == 20


def test_loss_ignores_padding():
    task = Seq2SeqTask("copy", min_length=1, max_length=6)
    batch = task.train_batch(1, 0, 8)
    logits = torch.randn(*batch["target_out"].shape, task.output_size, generator=torch.Generator().manual_seed(0))
    out = type("Out", (), {"prediction": logits})
    base = task.loss(out, batch)
    real = batch["target_out"] != PAD
    assert not bool(real.all())
    logp = torch.log_softmax(logits, -1).gather(2, batch["target_out"][..., None])[..., 0]  # (T, B)
    torch.testing.assert_close(base, -logp[real].mean())
    noisy = logits.clone()
    noisy[~real] = 100.0 * torch.randn_like(noisy[~real])
    out.prediction = noisy
    torch.testing.assert_close(task.loss(out, batch), base)


def test_exact_matches_hand_cases():
    target = torch.tensor([[5, 5, 6], [EOS, 6, EOS], [PAD, EOS, PAD]])  # "a", "ab", "b" (as ids)
    decoded = torch.tensor([[5, 5, 6], [EOS, 6, 7], [PAD, 7, EOS], [PAD, PAD, PAD]])
    assert exact_matches(decoded, target).tolist() == [True, False, False]
    assert exact_matches(target[:2], target).tolist() == [True, False, True]  # cut before its EOS
    assert exact_matches(torch.tensor([[5, 5, 6]]), target).tolist() == [False, False, False]


class CopyOracle(nn.Module):
    """Copies the source, confidently (logit 10), except that it gets the last character of every
    even-length source wrong: its exact match is the share of odd-length test strings."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def _logits(self, source, lengths, pos):  # source (B, S), lengths (B,), pos (T, B) -> (T, B, V)
        index = pos.clamp(max=source.shape[1] - 1)
        token = source.gather(1, index.t()).t()  # (B, T) -> (T, B)
        token = torch.where(pos < lengths, token, EOS)
        wrong = (pos == lengths - 1) & (lengths % 2 == 0)
        token = torch.where(wrong, 3 + (token - 3 + 1) % (self.vocab - 3), token)
        return 10.0 * nn.functional.one_hot(token, self.vocab).float()

    def forward(self, source, lengths, target_in, target_lengths=None):
        pos = torch.arange(target_in.shape[0])[:, None].expand_as(target_in)  # (T, B)
        return type("Out", (), {"prediction": self._logits(source.t(), lengths, pos)})

    def encode(self, source, lengths):
        batch = source.shape[1]
        state = [source.t()[None], lengths.view(1, batch, 1), torch.zeros(1, batch, 1, dtype=torch.int64)]
        return state, EncoderMemory(torch.zeros(1, batch, 1), torch.ones(1, batch, dtype=torch.bool))

    def decode(self, token, state, memory):
        source, lengths, pos = state
        logits = self._logits(source[0], lengths[0, :, 0], pos[..., 0])  # (1, B, V)
        return type("Step", (), {"logits": logits, "state": [source, lengths, pos + 1]})


@pytest.mark.parametrize("beam_size", [1, 3])
def test_score_against_an_oracle(beam_size):
    task = Seq2SeqTask("copy", min_length=1, max_length=6, valid_size=50, beam_size=beam_size)
    result = task.score(CopyOracle(task.output_size), task.eval_batches("valid", 16))
    lengths = [len(s) for s, _ in task.eval_pairs("valid")]
    odd, tokens, wrong = sum(n % 2 for n in lengths), sum(n + 1 for n in lengths), sum(1 - n % 2 for n in lengths)
    assert result["exact_match"] == pytest.approx(100.0 * odd / 50)
    assert result["token_accuracy"] == pytest.approx(100.0 * (tokens - wrong) / tokens)
    # Cross-entropy with one logit at 10 and V-1 at 0: log(e^10 + V - 1) - 10 when right, that + 10 when wrong.
    base = math.log(math.exp(10) + task.output_size - 1)
    assert result["loss"] == pytest.approx(((tokens - wrong) * (base - 10) + wrong * base) / tokens, rel=1e-5)


def test_task_attributes_and_errors():
    task = Seq2SeqTask("addition", min_length=1, max_length=3, beam_size=4)
    assert (task.name, task.metric, task.higher_is_better, task.head) == ("seq2seq", "exact_match", True, "seq2seq")
    assert task.input_size == task.output_size == 3 + 10 + 1
    assert task.describe() == "seq2seq addition, 1-3 digits, base 10, beam 4"
    assert Seq2SeqTask("copy").train_size == 10_000
    for kwargs, match in ((dict(problem="sort"), "problem"), (dict(num_symbols=37), "num_symbols"),
                          (dict(min_length=4, max_length=2), "min_length"), (dict(beam_size=0), "beam_size"),
                          (dict(train_size=-1), "train_size"), (dict(problem="copy", num_symbols=63), "num_symbols")):
        with pytest.raises(ValueError, match=match):
            Seq2SeqTask(**(dict(problem="addition") | kwargs))


def test_tiny_regularized_training_lowers_the_loss():
    torch.manual_seed(0)
    task = Seq2SeqTask("reverse", min_length=1, max_length=4, num_symbols=4, train_size=64 * 40)
    model = Seq2Seq(task.input_size, task.output_size, embedding_size=8, hidden_size=24, attention="dot",
                    embed_p=0.1, input_p=0.1, output_p=0.1, weight_p=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    valid = next(task.eval_batches("valid", 200))

    def valid_loss():
        model.eval()
        with torch.no_grad():
            return float(task.loss(task.forward(model, valid), valid))

    before = valid_loss()
    for index in range(40):
        model.train()
        batch = task.train_batch(1, index, 64)
        loss = task.loss(task.forward(model, batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert valid_loss() < 0.7 * before
