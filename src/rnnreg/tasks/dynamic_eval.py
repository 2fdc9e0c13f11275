"""Dynamic evaluation: adapt a language model to the text it is scoring, segment by segment.

Krause et al. (2018), "Dynamic evaluation of neural sequence models" (arXiv 1709.07432): each
segment s_i of ``bptt`` tokens is first scored with the current weights, then the gradient of its
mean loss moves the weights before s_{i+1} is scored, so a pattern seen once in the test text is
predicted better when it recurs. The update is the paper's "RMS with an RMS global prior" (sec. 5):

    theta_i = theta_{i-1} - lr * grad L(s_i) / (sqrt(MS_g) + epsilon)
                          + min(decay * RMS_norm, 1) * (theta_0 - theta_{i-1})
    RMS_norm = sqrt(MS_g) / avg(sqrt(MS_g))

MS_g is the mean squared gradient of the trained model over training batches (RMSprop's statistic,
collected once, never updated at test time; eq. 6 by the authors' README); epsilon is added outside
the square root; theta_0 are the trained weights, the "global prior" every step decays towards.
The details the paper leaves to its code follow the authors' ``dynamiceval.py`` (benkrause/
dynamic-evaluation at 8f872c5, the version whose hyperparameters "reflect the paper equations";
zihangdai/mos ships the older root-*sum*-squared one, whose lr, epsilon and decay are scaled
differently): avg() is the mean over parameter tensors of each tensor's mean, and the decay rate
is clipped at 1 so that a step at most returns a weight to theta_0, never overshoots it. The
segment loss is the mean NLL over its T x B tokens. The authors adapt one stream (B = 1) with
segments of 5 tokens and MS_g from batches of 100 x 5; their lr, decay and epsilon are in those
units. With B > 1 all columns share one update.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..data.batching import get_batch
from ..models.language_model import RNNLanguageModel
from ..regularizers.monte_carlo import set_mc_dropout

Progress = Callable[[int, int], None]

# The authors' grid (dynamiceval.py --grid, for segments of 5 tokens, statistics on batches of 100
# columns, evaluation on one column), scaled linearly with the segment length as they do.
PAPER_LRS = (3e-5, 4e-5, 5e-5, 6e-5, 7e-5, 1e-4)
PAPER_DECAYS = (1e-3, 2e-3, 3e-3, 5e-3)
PAPER_EPSILON = 2e-5


def paper_grid(bptt: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(lrs, decays) of the authors' search for segments of ``bptt`` tokens."""
    scale = _positive_int("bptt", bptt) / 5.0
    return tuple(lr * scale for lr in PAPER_LRS), tuple(d * scale for d in PAPER_DECAYS)


class PriorUpdate:
    """The update above, applied in place to ``params`` (theta_0 is their value now).

    Everything but the gradient is fixed for a whole pass, so it is computed once, in float64, and
    stored in the parameters' dtype: the decay rate min(decay * RMS_norm, 1) and the step size
    lr / (sqrt(MS_g) + epsilon), one entry per weight.
    """

    def __init__(self, params: Sequence[Tensor], grad_stats: Sequence[Tensor], *, lr: float, decay: float,
                 epsilon: float) -> None:
        self.params = list(params)
        check_stats(self.params, grad_stats)
        rms = [s.detach().double().sqrt() for s in grad_stats]
        avg = torch.stack([r.mean() for r in rms]).mean() if rms else torch.tensor(0.0)
        # avg == 0 only when no weight ever had a gradient: nothing is pulled back then.
        norm = [r / avg if avg > 0 else torch.zeros_like(r) for r in rms]
        self.theta0 = [p.detach().clone() for p in self.params]
        self.rates = [(decay * n).clamp(max=1.0).to(p.device, p.dtype) for n, p in zip(norm, self.params)]
        self.steps = [(lr / (r + epsilon)).to(p.device, p.dtype) for r, p in zip(rms, self.params)]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor | None]) -> None:
        """One update from the gradients at the current weights (None: no gradient, e.g. an
        adaptive-softmax cluster no target fell in; that weight only decays)."""
        for p, p0, rate, size, g in zip(self.params, self.theta0, self.rates, self.steps, grads):
            # lerp: p + rate * (p0 - p), computed as p0 - (1 - rate) * (p0 - p) for rate >= 0.5,
            # so a rate of 1 returns exactly p0.
            p.lerp_(p0, rate)
            if g is not None:
                p.addcmul_(g, size, value=-1.0)


def gradient_statistics(model: nn.Module, train: Tensor, *, bptt: int, max_batches: int | None = None,
                        progress: Progress | None = None) -> list[Tensor]:
    """MS_g: the mean over training windows of each parameter's squared gradient (float64, one
    tensor per ``model.parameters()``, the same shapes).

    train: (N, B) columns, walked in windows of ``bptt`` with the state carried (detached); the
    gradient is that of the window's mean NLL. The authors use every window of the training set
    (B = 100, bptt = 5: about 1,860 windows on PTB): MS_g is an expectation over the training
    distribution, and a noisy estimate of it for a rarely-active weight (a rare word's embedding
    row) gives that weight a wild step size. ``max_batches`` caps the count for speed. Computed in
    eval mode (no dropout) on a copy: the caller's model, its mode and its ``.grad`` are untouched.
    """
    _check_source("train", train)
    _positive_int("bptt", bptt)
    if max_batches is not None:
        _positive_int("max_batches", max_batches)
    work = _working_copy(model)
    params = list(work.parameters())
    sums = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    starts = range(0, train.shape[0] - 1, bptt)[:max_batches]
    state, done, total = None, 0, min(train.shape[0] - 1, len(starts) * bptt) * train.shape[1]
    for i in starts:
        x, y = get_batch(train, i, bptt)  # (T, B), (T, B)
        out = work(x, state, targets=y)
        grads = torch.autograd.grad(out.nll.mean(), params, allow_unused=True)
        for s, g in zip(sums, grads):
            if g is not None:
                s.add_(g.double().square())
        state = RNNLanguageModel.detach_state(out.state)
        done += y.numel()
        if progress is not None:
            progress(done, total)
    return [s / max(len(starts), 1) for s in sums]


def dynamic_evaluate(model: nn.Module, source: Tensor, *, bptt: int, lr: float, decay: float, epsilon: float,
                     grad_stats: Sequence[Tensor], progress: Progress | None = None) -> float:
    """Mean NLL (nats per token) of ``source`` (N, B) under dynamic evaluation: each window of
    ``bptt`` tokens is scored, then its gradient updates the weights (module docstring), the
    state carried across windows (detached). Runs on a deep copy in eval mode (no dropout): the
    caller's model is left bit-identical. With lr = decay = 0 it is exactly
    :func:`rnnreg.tasks.lm_evaluation.evaluate` (with lr = 0 alone, to float32 rounding).
    Deterministic on CPU; on CUDA the embedding's backward adds with atomics unless
    ``torch.use_deterministic_algorithms(True)``."""
    _check_source("source", source)
    _positive_int("bptt", bptt)
    _check_rates(lr, decay, epsilon)
    work = _working_copy(model)
    params = list(work.parameters())  # tied weights appear once: one update each
    update = PriorUpdate(params, grad_stats, lr=lr, decay=decay, epsilon=epsilon)
    # With both rates 0 no weight moves: no gradient is needed, and without autograd recording
    # torch's CPU LSTM takes the very kernel static evaluation takes (the two differ in the last bits).
    adapt = lr > 0 or decay > 0
    rows, columns = source.shape
    total, count, state = 0.0, 0, None
    for i in range(0, rows - 1, bptt):
        x, y = get_batch(source, i, bptt)  # (T, B), (T, B)
        with torch.set_grad_enabled(adapt):
            out = work(x, state, targets=y)
        total += out.nll.detach().double().sum().item()  # (T, B) -log p(target), before the update
        count += y.numel()
        if adapt and i + bptt < rows - 1:  # the last window's update would score nothing
            update.step(torch.autograd.grad(out.nll.mean(), params, allow_unused=True))
        state = RNNLanguageModel.detach_state(out.state)
        if progress is not None:
            progress(count, (rows - 1) * columns)
    return total / max(count, 1)


def search_dynamic(model: nn.Module, valid: Tensor, grad_stats: Sequence[Tensor], *, bptt: int,
                   lrs: Sequence[float], decays: Sequence[float], epsilon: float,
                   progress: Progress | None = None) -> tuple[float, float, dict[tuple[float, float], float]]:
    """Grid search on validation text, as the authors do: (best lr, best decay, {(lr, decay):
    mean NLL}). Ties go to the first pair in grid order (decays outer, lrs inner); a NaN score
    never wins."""
    grid = [(lr, d) for d in decays for lr in lrs]
    if not grid:
        raise ValueError("lrs and decays must each hold at least one value")
    _check_source("valid", valid)
    per_pass = (valid.shape[0] - 1) * valid.shape[1]
    scores: dict[tuple[float, float], float] = {}
    for k, (lr, decay) in enumerate(grid):
        inner = None if progress is None else _offset(progress, k * per_pass, len(grid) * per_pass)
        scores[(lr, decay)] = dynamic_evaluate(model, valid, bptt=bptt, lr=lr, decay=decay, epsilon=epsilon,
                                               grad_stats=grad_stats, progress=inner)
    best = min(scores, key=lambda key: (math.isnan(scores[key]), scores[key]))
    return best[0], best[1], scores


def check_stats(params: Sequence[Tensor], grad_stats: Sequence[Tensor]) -> None:
    """A ValueError unless ``grad_stats`` has one tensor of each parameter's shape, in order."""
    if len(grad_stats) != len(params):
        raise ValueError(f"grad_stats has {len(grad_stats)} tensors for {len(params)} parameters")
    for k, (p, s) in enumerate(zip(params, grad_stats)):
        if tuple(s.shape) != tuple(p.shape):
            raise ValueError(f"grad_stats[{k}] has shape {tuple(s.shape)}, its parameter {tuple(p.shape)}")


def _working_copy(model: nn.Module) -> nn.Module:
    """A deep copy (ties kept) in eval mode with MC dropout off, every weight differentiable."""
    work = copy.deepcopy(model)
    set_mc_dropout(work.eval(), False)
    for p in work.parameters():
        p.requires_grad_(True)
        p.grad = None
    return work


def _offset(progress: Progress, start: int, total: int) -> Progress:
    return lambda done, _total: progress(start + done, total)


def _check_source(name: str, source: Tensor) -> None:
    if not isinstance(source, Tensor) or source.dim() != 2 or source.shape[0] < 2:
        raise ValueError(f"{name} must be (N, B) token ids with N >= 2, got "
                         f"{tuple(source.shape) if isinstance(source, Tensor) else type(source).__name__}")


def _check_rates(lr: float, decay: float, epsilon: float) -> None:
    for name, value in (("lr", lr), ("decay", decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) \
            or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
