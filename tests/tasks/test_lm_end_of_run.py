"""The end of a language model's run: the cache pointer and dynamic evaluation scored on valid and
test as one stream of text each, with the settings the task was given."""

from __future__ import annotations

import pytest
import torch

from rnnreg.data import load_dataset
from rnnreg.models import RNNLanguageModel
from rnnreg.tasks.cache_pointer import cache_pointer_nll
from rnnreg.tasks.dynamic_eval import dynamic_evaluate, gradient_statistics
from rnnreg.tasks.language_model import LanguageModelTask
from rnnreg.tasks.lm_metrics import perplexity

from lm_fixtures import write_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_dataset(str(write_corpus(tmp_path_factory.mktemp("corpus"), lines=(60, 20, 20))))


def started(corpus, **methods):
    task = LanguageModelTask(corpus, metric="ppl", bptt=10, variable_bptt=False, **methods)
    task.start(batch_size=4, eval_batch_size=4, test_batch_size=2, device=torch.device("cpu"))
    return task


def test_text_is_one_stream_of_the_split(corpus):
    text = started(corpus).text("valid")
    assert text.shape == (corpus.valid.numel(), 1) and torch.equal(text[:, 0], corpus.valid)


def test_finish_scores_both_methods_with_their_settings(corpus):
    task = started(corpus, cache_window=30, cache_theta=0.5, cache_lambda=0.2, dynamic=True, dynamic_lr=1e-3,
                   dynamic_decay=1e-2, dynamic_epsilon=1e-4, dynamic_bptt=4, dynamic_batch_size=3,
                   dynamic_max_batches=6)
    torch.manual_seed(0)
    model = RNNLanguageModel(len(corpus.vocab), embedding_size=8, hidden_size=8, num_layers=1).eval()
    extras = task.finish(model, seed=0)
    assert extras["cache"] == {"window": 30, "theta": 0.5, "lambda": 0.2}
    assert extras["dynamic"] == {"lr": 1e-3, "decay": 1e-2, "epsilon": 1e-4, "bptt": 4, "batch_size": 3,
                                 "max_batches": 6}
    stats = gradient_statistics(model, task._columns("train", 3, "x"), bptt=4, max_batches=6)
    for split in ("valid", "test"):
        text = task.text(split)
        assert extras[f"{split}_cache"] == perplexity(cache_pointer_nll(model, text, window=30, theta=0.5,
                                                                        lambda_=0.2, bptt=10))
        assert extras[f"{split}_dynamic"] == perplexity(dynamic_evaluate(model, text, bptt=4, lr=1e-3, decay=1e-2,
                                                                         epsilon=1e-4, grad_stats=stats))
    assert "valid_cache" not in started(corpus).finish(model, seed=0)      # off unless asked


def test_a_dynamic_batch_too_large_for_the_training_text_is_refused_at_the_start(corpus):
    with pytest.raises(ValueError, match="lower evaluation.dynamic_batch_size"):
        started(corpus, dynamic=True, dynamic_batch_size=100_000)
    with pytest.raises(ValueError, match="lower data.batch_size"):           # the data settings still say data.
        LanguageModelTask(corpus, metric="ppl", bptt=10).start(batch_size=100_000, eval_batch_size=4,
                                                               test_batch_size=2, device=torch.device("cpu"))
