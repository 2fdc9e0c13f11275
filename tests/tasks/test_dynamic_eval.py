"""Dynamic evaluation (Krause et al. 2018): the update rule, its statistics, and what it leaves alone."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from rnnreg.models import RNNLanguageModel
from rnnreg.regularizers.monte_carlo import set_mc_dropout
from rnnreg.tasks.dynamic_eval import (PAPER_DECAYS, PAPER_LRS, PriorUpdate, dynamic_evaluate, gradient_statistics,
                                       paper_grid, search_dynamic)
from rnnreg.tasks.lm_evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")
V, BPTT, EPS = 20, 5, 1e-5
VARIANTS = {"full": {}, "tied": {"tie_weights": True},
            "adaptive": {"softmax": "adaptive", "adaptive_cutoffs": (5, 12), "adaptive_div_value": 2.0},
            "mos": {"softmax": "mos", "mos_experts": 3, "tie_weights": True}}


def _lm(seed: int = 0, **kw) -> RNNLanguageModel:
    torch.manual_seed(seed)
    return RNNLanguageModel(V, embedding_size=8, hidden_size=12, num_layers=2, **kw)


def _tokens(rows: int, columns: int, seed: int) -> torch.Tensor:
    return torch.randint(V, (rows, columns), generator=torch.Generator().manual_seed(seed))  # (N, B)


def _repeated(piece: int = 10, times: int = 12) -> torch.Tensor:
    """One stream (N, 1): a random piece of text said ``times`` times over."""
    return _tokens(piece, 1, seed=1).repeat(times, 1)


@pytest.fixture(scope="module")
def model() -> RNNLanguageModel:
    return _lm()


@pytest.fixture(scope="module")
def stats(model) -> list[torch.Tensor]:
    return gradient_statistics(model, _tokens(60, 4, seed=2), bptt=BPTT)


def test_statistics_have_the_parameters_shapes_and_are_mean_squared_gradients(model, stats):
    params = list(model.parameters())
    assert [s.shape for s in stats] == [p.shape for p in params]
    assert all(s.dtype == torch.float64 and (s >= 0).all() for s in stats)
    # One window: MS_g is the square of that window's mean-NLL gradient.
    train = _tokens(60, 4, seed=2)
    one = gradient_statistics(model, train, bptt=BPTT, max_batches=1)
    work = copy.deepcopy(model).eval()
    out = work(train[:BPTT], targets=train[1:BPTT + 1])
    grads = torch.autograd.grad(out.nll.mean(), list(work.parameters()))
    for s, g in zip(one, grads):
        torch.testing.assert_close(s, g.double().square())
    assert not all(torch.equal(a, b) for a, b in zip(one, stats))


def test_statistics_of_a_tied_model_count_the_shared_matrix_once():
    tied = _lm(tie_weights=True)
    stats = gradient_statistics(tied, _tokens(30, 2, seed=3), bptt=BPTT)
    assert len(stats) == len(list(tied.parameters())) == len(list(_lm().parameters())) - 1


def test_statistics_are_taken_without_dropout():
    lm, train = _lm(embed_p=0.2, input_p=0.3, hidden_p=0.3, output_p=0.3), _tokens(30, 2, seed=3)
    in_training = gradient_statistics(lm.train(), train, bptt=BPTT)
    in_eval = gradient_statistics(copy.deepcopy(lm).eval(), train, bptt=BPTT)
    assert all(torch.equal(a, b) for a, b in zip(in_training, in_eval))


def test_the_callers_model_is_left_bit_identical(stats):
    lm = _lm(embed_p=0.2, input_p=0.3, hidden_p=0.3, output_p=0.3).train()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    gradient_statistics(lm, _tokens(30, 2, seed=3), bptt=BPTT)
    dynamic_evaluate(lm, _repeated(), bptt=BPTT, lr=1e-2, decay=1e-2, epsilon=EPS, grad_stats=stats)
    after = lm.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert lm.training and all(p.grad is None for p in lm.parameters())


def test_zero_rates_give_exactly_the_static_evaluation_without_dropout(stats):
    lm = _lm(embed_p=0.2, input_p=0.3, hidden_p=0.3, output_p=0.3)
    source = _tokens(23, 3, seed=4)  # the last window is short
    static = evaluate(copy.deepcopy(lm), source, BPTT)
    set_mc_dropout(lm.train(), True)  # dropout of every kind stays off all the same
    assert dynamic_evaluate(lm, source, bptt=BPTT, lr=0.0, decay=0.0, epsilon=EPS, grad_stats=stats) == static
    # lr = 0 with a decay: the gradients are taken, but every weight stays at theta_0 (torch's LSTM
    # kernel under autograd differs from the inference one in the last bits).
    assert dynamic_evaluate(lm, source, bptt=BPTT, lr=0.0, decay=0.5, epsilon=EPS,
                            grad_stats=stats) == pytest.approx(static, rel=1e-6)


def test_two_calls_give_the_same_number(model, stats):
    kw = dict(bptt=BPTT, lr=3e-3, decay=1e-2, epsilon=EPS, grad_stats=stats)
    first = dynamic_evaluate(model, _repeated(), **kw)
    assert dynamic_evaluate(model, _repeated(), **kw) == first
    assert first != evaluate(copy.deepcopy(model), _repeated(), BPTT)


def test_repeated_text_is_predicted_better_than_by_static_evaluation(model, stats):
    # Krause et al.: the adapted model assigns higher probability to patterns that re-occur.
    static = evaluate(copy.deepcopy(model), _repeated(), BPTT)
    dynamic = dynamic_evaluate(model, _repeated(), bptt=BPTT, lr=1e-3, decay=1e-2, epsilon=EPS, grad_stats=stats)
    assert dynamic < static - 0.1


def test_update_matches_the_hand_computed_one():
    a, b = torch.nn.Parameter(torch.tensor([1.0, 2.0])), torch.nn.Parameter(torch.tensor([0.5]))
    # sqrt(MS_g): a = [2, 1] (mean 1.5), b = [0.5] (mean 0.5); avg over tensors = 1.0 (not 7/6).
    update = PriorUpdate([a, b], [torch.tensor([4.0, 1.0]), torch.tensor([0.25])], lr=0.1, decay=0.4, epsilon=0.5)
    with torch.no_grad():
        a += torch.tensor([0.5, -1.0])  # theta_{i-1} != theta_0
        b += 1.0
    update.step([torch.tensor([1.0, 3.0]), torch.tensor([2.0])])
    # rates min(0.4 * rms / 1.0, 1) = [0.8, 0.4], [0.2]; steps 0.1 / (rms + 0.5) = [0.04, 1 / 15], [0.1]
    # a0: 1.5 + 0.8 (1 - 1.5) - 0.04 * 1; a1: 1 + 0.4 (2 - 1) - 0.2; b: 1.5 + 0.2 (0.5 - 1.5) - 0.1 * 2
    torch.testing.assert_close(a.detach(), torch.tensor([1.06, 1.2]))
    torch.testing.assert_close(b.detach(), torch.tensor([1.1]))


def test_a_huge_decay_snaps_the_weights_back_to_the_trained_ones():
    p = torch.nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(5)))
    theta0, ms = p.detach().clone(), torch.full((3, 4), 0.04)
    snap = PriorUpdate([p], [ms], lr=0.0, decay=1e6, epsilon=EPS)  # decay * RMS_norm clipped at 1
    with torch.no_grad():
        p.add_(1.0)
    snap.step([torch.ones(3, 4)])
    assert torch.equal(p.detach(), theta0)
    # With a learning rate, each step starts again from theta_0: only the last gradient shows.
    learn = PriorUpdate([p], [ms], lr=0.1, decay=1e6, epsilon=EPS)
    g1, g2 = torch.full((3, 4), 5.0), torch.full((3, 4), -1.0)
    learn.step([g1])
    learn.step([g2])
    torch.testing.assert_close(p.detach(), theta0 - 0.1 * g2 / (0.2 + EPS))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dynamic_evaluation_scores_each_window_then_updates(variant):
    """Three windows by hand: score, update (gradient only: theta = theta_0), score, update
    (gradient and decay), score; every output layer, tied weights updated once."""
    kw = VARIANTS[variant]
    if variant == "adaptive":
        kw = {**kw, "frequency_order": torch.randperm(V, generator=torch.Generator().manual_seed(0)).tolist()}
    lm, source = _lm(**kw), _tokens(3 * BPTT + 1, 2, seed=6)
    stats = gradient_statistics(lm, _tokens(40, 2, seed=7), bptt=BPTT)
    lr, decay = 3e-2, 0.3
    got = dynamic_evaluate(lm, source, bptt=BPTT, lr=lr, decay=decay, epsilon=EPS, grad_stats=stats)

    work = copy.deepcopy(lm).eval()
    params = list(work.parameters())
    theta0 = [p.detach().double().clone() for p in params]
    rms = [s.sqrt() for s in stats]
    avg = sum(r.mean() for r in rms) / len(rms)
    total, state = 0.0, None
    for i in range(0, 3 * BPTT, BPTT):
        out = work(source[i:i + BPTT], state, targets=source[i + 1:i + 1 + BPTT])
        total += out.nll.double().sum().item()
        grads = torch.autograd.grad(out.nll.mean(), params, allow_unused=True)
        with torch.no_grad():
            for p, p0, r, g in zip(params, theta0, rms, grads):
                g = torch.zeros_like(p0) if g is None else g.double()
                new = p.double() - lr * g / (r + EPS) + torch.clamp(decay * r / avg, max=1.0) * (p0 - p.double())
                p.copy_(new)
        state = RNNLanguageModel.detach_state(out.state)
    assert got == pytest.approx(total / source[1:].numel(), rel=1e-6)
    assert got != pytest.approx(evaluate(copy.deepcopy(lm), source, BPTT), rel=1e-4)


def test_search_returns_the_argmin_of_its_scores(model, stats):
    lrs, decays, calls = (0.0, 1e-3), (0.0, 1e-2), []
    lr, decay, scores = search_dynamic(model, _repeated(), stats, bptt=BPTT, lrs=lrs, decays=decays, epsilon=EPS,
                                       progress=lambda done, total: calls.append((done, total)))
    assert set(scores) == {(a, d) for a in lrs for d in decays}
    assert scores[(lr, decay)] == min(scores.values()) and lr > 0
    assert scores[(0.0, 0.0)] == evaluate(copy.deepcopy(model), _repeated(), BPTT)
    done = [c[0] for c in calls]
    assert done == sorted(done) and calls[-1] == (4 * (_repeated().shape[0] - 1), 4 * (_repeated().shape[0] - 1))


def test_search_never_picks_a_nan(model, stats, monkeypatch):
    import rnnreg.tasks.dynamic_eval as module
    fake = {0.1: math.nan, 0.2: 3.0, 0.3: 2.0}
    monkeypatch.setattr(module, "dynamic_evaluate", lambda *a, lr, **kw: fake[lr])
    assert search_dynamic(model, _repeated(), stats, bptt=BPTT, lrs=(0.1, 0.2, 0.3), decays=(0.0,),
                          epsilon=EPS)[:2] == (0.3, 0.0)


def test_bad_arguments_are_refused(model, stats):
    kw = dict(bptt=BPTT, lr=1e-3, decay=1e-3, epsilon=EPS, grad_stats=stats)
    with pytest.raises(ValueError, match="grad_stats"):
        dynamic_evaluate(model, _repeated(), **{**kw, "grad_stats": stats[:-1]})
    with pytest.raises(ValueError, match="shape"):
        dynamic_evaluate(model, _repeated(), **{**kw, "grad_stats": [s.t() if s.dim() == 2 else s for s in stats]})
    for name, value in (("epsilon", 0.0), ("lr", -1.0), ("decay", math.inf)):
        with pytest.raises(ValueError, match=name):
            dynamic_evaluate(model, _repeated(), **{**kw, name: value})
    with pytest.raises(ValueError, match="at least one"):
        search_dynamic(model, _repeated(), stats, bptt=BPTT, lrs=(), decays=(0.0,), epsilon=EPS)


def test_the_papers_grid_scales_with_the_segment_length():
    assert paper_grid(5) == (PAPER_LRS, PAPER_DECAYS)
    lrs, decays = paper_grid(20)
    assert lrs[0] == pytest.approx(1.2e-4) and decays[-1] == pytest.approx(2e-2)
