"""Penalty terms added to the training loss: activation, temporal and norm-stabilizing penalties,
and L1/L2 weight decay. Pure functions; each returns a scalar tensor on the input's device, in
float32 for half-precision inputs (float16 / bfloat16) and in the input's dtype otherwise.

Half precision is computed in float32 (the gradient flows back through the cast): a sum of squares
of float16 states overflows to inf from |h| of about 256 at these sizes, and bf16 rounds the
penalty to 8 bits, so mixed-precision training keeps its loss terms in float32.

Hidden sequences are time-major, ``h`` of shape (T, B, H). Every penalty is exactly 0 when its
weight is 0 (still a tensor connected to the input's graph, so ``loss + penalty`` always works).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from .kernels.autograd_modes import plain_autograd
from .kernels.squared_sums import MeanOfSquares, MeanOfSquaredSteps
from .regularizers.masks import check_nonnegative

NORM_STABILIZER_COSTS = ("norm", "delta", "relative", "l1", "target", "endpoints")


def _fp32(x: Tensor) -> Tensor:
    """float16 / bfloat16 as float32 (a differentiable cast); any other dtype as it is."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _zero(x: Tensor) -> Tensor:
    # A sum over an empty slice: exactly 0 (even if x holds inf/nan), same dtype/device, and part
    # of x's autograd graph (its gradient is zero) so backward() through it never fails.
    return x.reshape(-1)[:0].sum()  # (N,) -> (0,) -> ()


def step_mask(lengths: Tensor | None, steps: int, like: Tensor) -> Tensor | None:
    """(T, B) 1.0 where step t < lengths[b] (a real step of sequence b), 0.0 on padding; None
    when ``lengths`` is None (every step is real)."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=like.device)
    if lengths.dim() != 1 or lengths.shape[0] != like.shape[1]:
        raise ValueError(f"lengths must be (B,) with B = {like.shape[1]}, got shape {tuple(lengths.shape)}")
    return (torch.arange(steps, device=like.device).unsqueeze(1) < lengths.unsqueeze(0)).to(like.dtype)


def _mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` (T', B) or (T', B, H) over the entries ``mask`` (T', B) keeps."""
    if mask is None:
        return values.mean()
    if values.dim() == 3:
        mask = mask.unsqueeze(-1).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def ar(h: Tensor, alpha: float, lengths: Tensor | None = None) -> Tensor:
    """Activation regularization: ``alpha * mean(h^2)`` over all elements.

    Merity, McCann & Socher (2017), "Revisiting activation regularization for language RNNs";
    AWD-LSTM applies it to the (dropped) output of the last layer. ``h``: (T, B, H). ``lengths``
    (B,): padded batches average over each sequence's real steps only.
    """
    alpha = check_nonnegative("alpha", alpha)
    h = _fp32(h)
    if alpha == 0.0:
        return _zero(h)
    if lengths is None and plain_autograd():  # the closed-form backward (kernels/squared_sums.py)
        return alpha * MeanOfSquares.apply(h)
    return alpha * _mean(h.pow(2), step_mask(lengths, h.shape[0], h))


def tar(h: Tensor, beta: float, lengths: Tensor | None = None) -> Tensor:
    """Temporal activation regularization: ``beta * mean((h_t - h_{t-1})^2)`` over t >= 1, B, H.

    Merity, McCann & Socher (2017); applied to the raw (undropped) output. ``h``: (T, B, H).
    Returns 0 when T < 2 (no consecutive pair). ``lengths`` (B,): only pairs of real steps count,
    so the drop to zero padding after a short sequence is not penalised.
    """
    beta = check_nonnegative("beta", beta)
    h = _fp32(h)
    if beta == 0.0 or h.shape[0] < 2:
        return _zero(h)
    if lengths is None and plain_autograd():  # the closed-form backward (kernels/squared_sums.py)
        return beta * MeanOfSquaredSteps.apply(h)
    mask = step_mask(lengths, h.shape[0], h)
    return beta * _mean((h[1:] - h[:-1]).pow(2), None if mask is None else mask[1:] * mask[:-1])


def _norms(seq: Tensor, cost: str) -> Tensor:
    # (T', B, H) -> (T', B): L1 norms for the "l1" variant, L2 otherwise.
    return seq.abs().sum(dim=-1) if cost == "l1" else torch.linalg.vector_norm(seq, dim=-1)


def norm_stabilizer(h: Tensor, beta: float, h0: Tensor | None = None, cost: str = "norm",
                    target: float | None = None, lengths: Tensor | None = None) -> Tensor:
    """Norm-stabilizer (Krueger & Memisevic 2016, "Regularizing RNNs by stabilizing activations").

    With ``n_t = ||h_t||_2`` over the last dim, eq. 1 of the paper is
    ``beta * mean_{t,b} (n_t - n_{t-1})^2``. If ``h0`` (B, H) is given it is prepended as step 0,
    so the first output is penalised against the initial state; otherwise t runs over 1..T-1.

    ``cost`` selects the variants the paper compares against (all multiplied by ``beta``):

    - ``"norm"`` (default): eq. 1 above.
    - ``"delta"``: ``mean_{t,b} ||h_t - h_{t-1}||_2^2`` (the states, not their norms).
    - ``"relative"``: ``mean_{t,b} ((n_t - n_{t-1}) / n_{t-1})^2``; the divisor is clamped below at
      the machine epsilon of the dtype it is computed in (float32 for half-precision h), so an
      all-zero previous state (e.g. a zero h0) gives a large but finite penalty instead of inf/nan.
    - ``"l1"``: eq. 1 with L1 norms ``n_t = ||h_t||_1``.
    - ``"target"``: ``mean_{t,b} (n_t - target)^2`` over all T steps of ``h`` (no h_{t-1} term, so
      ``h0`` is not used); ``target`` is required and must be >= 0.
    - ``"endpoints"``: ``mean_b (n_0 - n_T)^2``, n_0 the norm of ``h0`` if given else of ``h[0]``,
      n_T the norm of ``h[-1]``.

    Args:
        h: (T, B, H) hidden states. h0: optional (B, H) initial state. lengths: optional (B,)
            real steps per sequence of a padded batch: only pairs of real steps are compared
            (``endpoints`` takes each sequence's last real step), and means run over them.
    Returns:
        A scalar; 0 (not nan) when there is no pair of steps to compare (T < 2 without h0).
    """
    beta = check_nonnegative("beta", beta)
    if cost not in NORM_STABILIZER_COSTS:
        raise ValueError(f"unknown norm_stabilizer cost {cost!r}; valid: "
                         f"{', '.join(NORM_STABILIZER_COSTS)}")
    if cost == "target":
        if target is None:
            raise ValueError("norm_stabilizer cost='target' requires a target norm")
        target = check_nonnegative("target", target)
    elif target is not None:
        raise ValueError(f"target is only used with cost='target', not cost={cost!r}")
    if h.dim() < 2:
        raise ValueError(f"h must be (T, B, H), got shape {tuple(h.shape)}")
    if h0 is not None and h0.shape != h.shape[1:]:
        raise ValueError(f"h0 must have shape {tuple(h.shape[1:])}, got {tuple(h0.shape)}")
    h, h0 = _fp32(h), None if h0 is None else _fp32(h0)
    if beta == 0.0 or h.shape[0] == 0:
        return _zero(h)

    mask = step_mask(lengths, h.shape[0], h)  # (T, B) or None
    if cost == "target":
        return beta * _mean((_norms(h, cost) - target).pow(2), mask)
    if cost == "endpoints":
        first = h[0] if h0 is None else h0  # (B, H)
        last = h[-1] if lengths is None else h[mask.sum(0).long().clamp_min(1) - 1, torch.arange(h.shape[1])]
        return beta * (_norms(first, cost) - _norms(last, cost)).pow(2).mean()

    seq = h if h0 is None else torch.cat([h0.unsqueeze(0), h])  # (T, B, H) or (T + 1, B, H)
    if mask is not None and h0 is not None:
        mask = torch.cat([mask.new_ones(1, mask.shape[1]), mask])  # h0 is real: (T + 1, B)
    pairs = None if mask is None else mask[1:] * mask[:-1]  # (T' - 1, B): both steps real
    if seq.shape[0] < 2:
        return _zero(h)
    if cost == "delta":
        return beta * _mean((seq[1:] - seq[:-1]).pow(2).sum(dim=-1), pairs)
    n = _norms(seq, cost)  # (T', B)
    if cost == "relative":
        prev = n[:-1].clamp_min(torch.finfo(n.dtype).eps)
        return beta * _mean(((n[1:] - n[:-1]) / prev).pow(2), pairs)
    return beta * _mean((n[1:] - n[:-1]).pow(2), pairs)


def _params(params: Iterable[Tensor]) -> list[Tensor]:
    # Materialise once: params is often a generator such as model.parameters(). Half precision in
    # float32 (module docstring).
    return [_fp32(p) for p in params]


def _total(terms: list[Tensor]) -> Tensor:
    return torch.stack(terms).sum() if terms else torch.zeros(())


def l1_penalty(params: Iterable[Tensor], weight: float) -> Tensor:
    """``weight * sum_p sum |p|`` over all tensors in ``params`` (e.g. ``model.parameters()``).

    L1 weight decay (Tibshirani 1996, lasso). An empty ``params`` gives 0.
    """
    weight = check_nonnegative("weight", weight)
    ps = _params(params)
    if weight == 0.0:
        return _total([_zero(p) for p in ps])
    return weight * _total([p.abs().sum() for p in ps])


def l2_penalty(params: Iterable[Tensor], weight: float) -> Tensor:
    """``weight * sum_p sum p^2``: L2 weight decay, WITHOUT the conventional factor 1/2.

    Its gradient is ``2 * weight * p``, so ``weight`` here equals half of an optimizer's
    ``weight_decay`` for the same effect (Krogh & Hertz 1992, "A simple weight decay can improve
    generalization"). An empty ``params`` gives 0.
    """
    weight = check_nonnegative("weight", weight)
    ps = _params(params)
    if weight == 0.0:
        return _total([_zero(p) for p in ps])
    return weight * _total([p.pow(2).sum() for p in ps])


def elastic_net(params: Iterable[Tensor], l1: float, l2: float) -> Tensor:
    """``l1 * sum |p| + l2 * sum p^2`` (no 1/2), Zou & Hastie (2005), "Regularization and
    variable selection via the elastic net". ``params`` is iterated once."""
    l1 = check_nonnegative("l1", l1)
    l2 = check_nonnegative("l2", l2)
    ps = _params(params)
    return l1_penalty(ps, l1) + l2_penalty(ps, l2)
