"""The continuous cache pointer (Grave et al. 2016) against a slow, direct reading of its
equations; lambda = 0 is the plain evaluation; the cache carries across BPTT windows; the search
picks its grid's best."""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.data.batching import batchify
from rnnreg.models import RNNLanguageModel
from rnnreg.tasks.cache_pointer import cache_pointer_nll, cache_pointer_scores
from rnnreg.tasks.cache_search import search_cache
from rnnreg.tasks.lm_evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")
V = 23


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = RNNLanguageModel(V, embedding_size=8, hidden_size=12, num_layers=2, **kw)
    with torch.no_grad():              # weights large enough that h_t . h_i varies: a sharp cache
        for p in model.parameters():
            p.mul_(8.0)
    return model.eval()


def text(n=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (n,), generator=g)


@torch.no_grad()
def direct_nll(model, tokens, window, theta, lambda_):
    """Eq. 2 and 4, token by token, with whole distributions over the vocabulary (float64), from
    one forward over the whole text (no BPTT windows)."""
    x, y = tokens[:-1, None], tokens[1:]
    out = model(x)
    h = out.raw[-1][:, 0].double()                                   # (T, H)
    p_vocab = torch.softmax(out.logits[:, 0].double(), dim=-1)      # (T, V)
    total = 0.0
    for t in range(len(y)):
        p = p_vocab[t]
        if t > 0:
            first = max(0, t - window)
            attention = torch.softmax(theta * (h[first:t] @ h[t]), dim=0)  # over i in [t - window, t)
            p_cache = torch.zeros(V, dtype=torch.float64)
            for i, a in zip(range(first, t), attention):
                p_cache[y[i]] += a                                   # x_{i+1} = y_i
            p = (1 - lambda_) * p + lambda_ * p_cache
        total -= math.log(p[y[t]].item())
    return total / len(y)


@pytest.mark.parametrize("bptt", [7, 40, 400])
def test_matches_the_equations_token_by_token(bptt):
    model, tokens = tiny_model(), text()
    thetas, lambdas, window = (0.3, 1.0), (0.1, 0.5), 25        # window << 299 tokens: eviction
    scores = cache_pointer_scores(model, tokens, window=window, thetas=thetas, lambdas=lambdas, bptt=bptt)
    assert scores.tokens == len(tokens) - 1
    for theta in thetas:
        for lam in lambdas:
            assert scores.cache[(theta, lam)] == pytest.approx(direct_nll(model, tokens, window, theta, lam),
                                                               rel=1e-5)
    assert cache_pointer_nll(model, tokens[:, None], window=window, theta=1.0, lambda_=0.5,
                             bptt=bptt) == pytest.approx(scores.cache[(1.0, 0.5)], rel=1e-12)


def test_a_window_longer_than_the_text_keeps_everything():
    model, tokens = tiny_model(), text(120)
    got = cache_pointer_nll(model, tokens, window=10_000, theta=0.5, lambda_=0.3, bptt=13)
    assert got == pytest.approx(direct_nll(model, tokens, 10_000, 0.5, 0.3), rel=1e-5)
    shorter = cache_pointer_nll(model, tokens, window=3, theta=0.5, lambda_=0.3, bptt=13)
    assert shorter != pytest.approx(got, rel=1e-4)                  # the window matters


@pytest.mark.parametrize("softmax", ["full", "adaptive", "mos"])
def test_lambda_zero_is_the_plain_evaluation(softmax):
    extra = {"adaptive": dict(adaptive_cutoffs=(8,), frequency_order=tuple(range(V))),
             "mos": dict(mos_experts=3)}.get(softmax, {})
    model, tokens = tiny_model(softmax=softmax, **extra), text()
    plain = evaluate(model, batchify(tokens, 1), 9)
    scores = cache_pointer_scores(model, tokens, window=20, thetas=(1.0,), lambdas=(0.0, 0.2), bptt=9)
    assert scores.plain == plain
    assert scores.cache[(1.0, 0.0)] == pytest.approx(plain, rel=1e-13, abs=0)
    assert scores.cache[(1.0, 0.2)] != pytest.approx(plain, rel=1e-6)


def test_the_cache_helps_on_repeated_text():
    model, piece = tiny_model(), text(60)
    tokens = piece.repeat(5)                                         # each window has been read before
    scores = cache_pointer_scores(model, tokens, window=100, thetas=(1.0,), lambdas=(0.5,), bptt=20)
    assert scores.cache[(1.0, 0.5)] < scores.plain - 0.1


def test_the_first_token_falls_back_to_the_model():
    model, tokens = tiny_model(), text(3)
    plain_first = evaluate(model, batchify(tokens[:2], 1), 5)        # one predicted token: empty cache
    assert cache_pointer_nll(model, tokens[:2], window=5, theta=1.0, lambda_=1.0, bptt=5) == pytest.approx(
        plain_first, rel=1e-12)
    # With lambda = 1 and a second target never seen before, p = p_cache = 0: the loss is inf.
    unseen = torch.tensor([0, 1, 2])
    assert cache_pointer_nll(model, unseen, window=5, theta=1.0, lambda_=1.0, bptt=5) == math.inf


def test_progress_reaches_the_total_and_the_model_is_left_in_eval_mode():
    model, tokens, seen = tiny_model(), text(100), []
    model.train()
    cache_pointer_nll(model, tokens, window=10, theta=1.0, lambda_=0.1, bptt=30,
                      progress=lambda done, total: seen.append((done, total)))
    assert seen == [(30, 99), (60, 99), (90, 99), (99, 99)] and not model.training


@pytest.mark.parametrize("kwargs, message", [
    (dict(window=0), "window must be an int >= 1"),
    (dict(theta=-0.1), "theta must be finite and >= 0"),
    (dict(lambda_=1.5), r"lambda must be in \[0, 1\]"),
    (dict(lambda_=float("nan")), r"lambda must be in \[0, 1\]"),
])
def test_bad_settings_are_refused(kwargs, message):
    settings = dict(window=10, theta=1.0, lambda_=0.1, bptt=10) | kwargs
    with pytest.raises(ValueError, match=message):
        cache_pointer_nll(tiny_model(), text(30), **settings)


def test_more_than_one_stream_is_refused():
    with pytest.raises(ValueError, match="one stream of text"):
        cache_pointer_nll(tiny_model(), batchify(text(40), 2), window=10, theta=1.0, lambda_=0.1, bptt=10)


def test_the_search_picks_the_best_of_its_grid():
    model, tokens = tiny_model(), text(200).repeat(2)
    found = search_cache(model, tokens, window=50, bptt=25, thetas=(0.0, 0.3, 1.0), lambdas=(0.0, 0.2, 0.6))
    assert len(found.scores) == 9 and found.loss == min(found.scores.values())
    assert found.scores[(found.theta, found.lambda_)] == found.loss
    assert found.loss < found.plain and found.lambda_ > 0          # repeated text: the cache is worth it
    alone = cache_pointer_nll(model, tokens, window=50, theta=found.theta, lambda_=found.lambda_, bptt=25)
    assert alone == pytest.approx(found.loss, rel=1e-12)             # the grid scores like a single pair
