"""Language modelling as a task: windows tile each epoch, the lr follows the window length, the
BPTT generator resumes exactly, ranks share the columns, and the spec carries the vocabulary."""

from __future__ import annotations

import pytest
import torch

from rnnreg.data import load_dataset
from rnnreg.tasks.language_model import LanguageModelTask

from lm_fixtures import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_dataset(str(write_corpus(tmp_path_factory.mktemp("corpus"))))


def started(corpus, rank=0, world=1, batch_size=4, **kw):
    task = LanguageModelTask(corpus, metric="ppl", bptt=10, min_bptt=3, bptt_std=2.0, seed=5, **kw)
    task.start(batch_size=batch_size, eval_batch_size=4, test_batch_size=2, device=torch.device("cpu"),
               rank=rank, world_size=world)
    return task


def test_windows_tile_the_epoch_and_scale_the_lr(corpus):
    task = started(corpus)
    rows, position = task.epoch_size(), 0
    for after, batch in task.batches(1, 0):
        x, y = batch["x"], batch["y"]                              # (T, B) each
        assert after == position + x.shape[0] and torch.equal(x[1:], y[:-1])
        assert task.lr_scale(batch) == x.shape[0] / 10 and task.count(batch) == y.numel()
        position = after
    assert position == rows - 1                                    # the last row is a target only


def test_the_bptt_generator_resumes_exactly(corpus):
    task = started(corpus)
    stream = task.batches(1, 0)
    for _ in range(3):
        position, _ = next(stream)
    saved = task.state_dict()
    rest = [(p, b["x"]) for p, b in stream]
    again = started(corpus)
    again.load_state_dict(saved)
    replay = [(p, b["x"]) for p, b in again.batches(1, position)]
    assert [p for p, _ in rest] == [p for p, _ in replay]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rest, replay))


def test_ranks_take_contiguous_shares_of_the_columns(corpus):
    whole = next(started(corpus, batch_size=4).batches(1, 0))[1]["x"]      # (T, 4)
    shares = [next(started(corpus, rank=r, world=2, batch_size=4).batches(1, 0))[1]["x"] for r in (0, 1)]
    assert torch.equal(torch.cat(shares, dim=1), whole)


def test_spec_carries_the_vocabulary_and_a_too_large_batch_names_the_setting(corpus):
    task = started(corpus)
    spec = task.model_spec()
    assert spec.head == "lm" and spec.vocab == tuple(corpus.vocab.to_list()) and spec.input_size == len(spec.vocab)
    with pytest.raises(ValueError, match="lower data.batch_size"):
        started(corpus, batch_size=10**7)


def test_the_frequency_order_is_in_the_spec_only_when_asked(corpus):
    assert started(corpus).model_spec().frequency_order is None  # old checkpoints' specs still match
    order = started(corpus, frequency_order=True).model_spec().frequency_order
    counts = torch.bincount(corpus.train, minlength=len(corpus.vocab))
    assert sorted(order) == list(range(len(corpus.vocab)))
    ranked = counts[torch.tensor(order)]
    assert torch.all(ranked[:-1] >= ranked[1:])  # most frequent first
    for a, b in zip(order, order[1:]):  # ties keep first-seen (id) order: a function of the text alone
        assert counts[a] > counts[b] or a < b


def test_the_loss_is_the_mean_of_the_models_token_nll(corpus):
    from rnnreg.models import RNNLanguageModel
    task = started(corpus)
    model = RNNLanguageModel(len(corpus.vocab), embedding_size=8, hidden_size=8, num_layers=1).eval()
    batch = next(task.batches(1, 0))[1]
    out, _ = task.step(model, batch, None)
    want = torch.nn.functional.cross_entropy(out.logits.reshape(-1, len(corpus.vocab)), batch["y"].reshape(-1))
    torch.testing.assert_close(task.loss(out, batch), want)


def test_metric_fields_and_the_example_batch(corpus):
    task = started(corpus)
    batch = next(task.batches(1, 0))[1]
    assert task.step_fields(batch, 2.0)["ppl"] == pytest.approx(torch.tensor(2.0).exp().item())
    example = task.example_batch("valid", 7)
    assert example["x"].shape == (7, 8) and torch.equal(example["x"][1:], example["y"][:-1])
