"""NTASGD: equality with torch's SGD and ASGD, exact weight swapping, and checkpoint round trips."""

from __future__ import annotations

import io

import pytest
import torch

from rnnreg.optim import NTASGD


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in [(3, 4), (5,)]]


def _clone(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def _set_grads(params: list[torch.nn.Parameter], step: int) -> None:
    # Gradients that depend only on the step index, so two runs see identical gradients.
    gen = torch.Generator().manual_seed(1000 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def _quad_step(params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, step: int) -> None:
    # A real backward pass: loss = sum ||p - target_step||^2 with targets drawn per step.
    gen = torch.Generator().manual_seed(2000 + step)
    opt.zero_grad()
    loss = sum(((p - torch.randn(p.shape, generator=gen)) ** 2).sum() for p in params)
    loss.backward()
    opt.step()


def _snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _assert_bitwise(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2), (0.0, 0.1)])
def test_sgd_phase_is_torch_sgd_bitwise(momentum: float, wd: float) -> None:
    ours, ref = _params(), _params()
    opt = NTASGD(ours, lr=0.1, momentum=momentum, weight_decay=wd)
    ref_opt = torch.optim.SGD(ref, lr=0.1, momentum=momentum, weight_decay=wd)
    for step in range(8):
        _set_grads(ours, step)
        _set_grads(ref, step)
        if step == 3:  # a step where one parameter gets no gradient
            ours[1].grad = ref[1].grad = None
        opt.step()
        ref_opt.step()
        _assert_bitwise(_snapshot(ours), _snapshot(ref))


def test_torch_asgd_drops_the_first_iterate() -> None:
    # What the cross-check below relies on: torch.optim.ASGD(lambd=0, t0=0) updates its averaging
    # weight mu *after* using it (mu = 1 on the first two steps), so after k steps its ax is the
    # mean of iterates 2..k, not 1..k. With w_k = k (gradient -1, lr 1): mean(2..5) = 3.5.
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.ASGD([p], lr=1.0, lambd=0.0, alpha=0.75, t0=0)
    for _ in range(5):
        p.grad = -torch.ones_like(p)
        opt.step()
    assert opt.state[p]["ax"].item() == pytest.approx(3.5, abs=1e-6)


@pytest.mark.parametrize("lr", [0.25, 0.1])
def test_averages_match_torch_asgd(lr: float) -> None:
    ours, ref = _params(), _params()
    opt = NTASGD(ours, lr=lr, weight_decay=1e-2)
    ref_opt = torch.optim.ASGD(ref, lr=lr, lambd=0.0, alpha=0.75, t0=0, weight_decay=1e-2)
    for step in range(12):
        _quad_step(ours, opt, step)
        _quad_step(ref, ref_opt, step)
        if step == 0:
            opt.start_averaging()  # torch's ax covers iterates 2..k (see the test above)
    for p, q in zip(ours, ref, strict=True):
        # ASGD keeps its step size as a float32 tensor: lr = 0.25 is exact there, so the iterates
        # agree bitwise; for lr = 0.1 they agree up to float rounding.
        if lr == 0.25:
            assert torch.equal(p, q)
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(opt.state[p]["ax"], ref_opt.state[q]["ax"], rtol=1e-6, atol=1e-6)


def test_average_is_mean_of_iterates_since_switch() -> None:
    params = _params()
    opt = NTASGD(params, lr=0.05, momentum=0.5)
    for step in range(3):
        _quad_step(params, opt, step)
    opt.start_averaging()
    iterates = []
    for step in range(3, 10):
        _quad_step(params, opt, step)
        iterates.append(_snapshot(params))
    raw = _snapshot(params)
    with opt.averaged():
        for i, p in enumerate(params):
            mean = torch.stack([it[i].double() for it in iterates]).mean(0)
            torch.testing.assert_close(p.detach().double(), mean, rtol=1e-6, atol=1e-6)
    _assert_bitwise(_snapshot(params), raw)


def test_averaged_right_after_switch_before_any_step() -> None:
    # AWD-LSTM crashed here with KeyError: 'ax' (salesforce/awd-lstm-lm issues 70, 89).
    params = _params()
    opt = NTASGD(params, lr=0.1, momentum=0.9)
    _quad_step(params, opt, 0)
    opt.start_averaging()
    raw = _snapshot(params)
    with opt.averaged():
        _assert_bitwise(_snapshot(params), raw)  # no step since the switch: the switch point
    _assert_bitwise(_snapshot(params), raw)


def test_averaged_restores_exactly_and_on_exception() -> None:
    params = _params()
    opt = NTASGD(params, lr=0.1)
    opt.start_averaging()
    for step in range(4):
        _quad_step(params, opt, step)
    raw = _snapshot(params)
    with opt.averaged():
        assert not torch.equal(params[0], raw[0])  # the averages really are swapped in
    _assert_bitwise(_snapshot(params), raw)
    with pytest.raises(RuntimeError, match="boom"):
        with opt.averaged():
            with torch.no_grad():
                params[0].mul_(3.0)  # even edits made inside the block are undone
            raise RuntimeError("boom")
    _assert_bitwise(_snapshot(params), raw)


def test_averaged_is_noop_before_switch() -> None:
    params = _params()
    opt = NTASGD(params, lr=0.1)
    _quad_step(params, opt, 0)
    raw = _snapshot(params)
    with opt.averaged():
        _assert_bitwise(_snapshot(params), raw)
    assert "ax" not in opt.state[params[0]]


def test_copy_averages_to_params() -> None:
    params = _params()
    opt = NTASGD(params, lr=0.1)
    opt.start_averaging()
    for step in range(5):
        _quad_step(params, opt, step)
    with opt.averaged():
        averaged = _snapshot(params)
    opt.copy_averages_to_params()
    _assert_bitwise(_snapshot(params), averaged)


def test_observe_switches_once_and_keeps_all_parameters() -> None:
    # Two groups with different learning rates: AWD rebuilt a single-group torch.optim.ASGD from
    # model.parameters() at the switch, losing group settings; NTASGD keeps its groups.
    a, b = _params()
    opt = NTASGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, n=2)
    switched = [opt.observe(v) for v in [5.0, 4.0, 3.0, 3.5, 4.5, 6.0]]
    # code rule, n = 2: the first loss above min(history[:-2]) is 4.5 > min(5, 4) at t = 4.
    assert switched == [False, False, False, False, True, False]
    assert opt.averaging and opt.trigger.history == [5.0, 4.0, 3.0, 3.5, 4.5]
    a0, b0 = a.detach().clone(), b.detach().clone()
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    opt.step()
    assert torch.equal(a, a0 - 0.1) and torch.equal(b, b0 - 0.01)
    assert torch.equal(opt.state[a]["ax"], a) and torch.equal(opt.state[b]["ax"], b)


def test_parameter_without_grad_is_not_updated() -> None:
    params = _params()
    opt = NTASGD(params, lr=0.1, momentum=0.9, weight_decay=0.5)
    opt.start_averaging()
    frozen = params[1].detach().clone()
    for step in range(3):
        _set_grads(params, step)
        params[1].grad = None
        opt.step()
    assert torch.equal(params[1], frozen)  # not even weight decay touches it
    assert "momentum_buffer" not in opt.state[params[1]]
    assert torch.equal(opt.state[params[1]]["ax"], frozen)  # its value at every step


def test_weight_decay_is_l2_added_to_gradient() -> None:
    p = torch.nn.Parameter(torch.tensor([2.0, -4.0], dtype=torch.float64))
    opt = NTASGD([p], lr=0.5, weight_decay=0.1)
    p.grad = torch.zeros_like(p)
    opt.step()
    # g = 0 + 0.1 * w, so w <- w - 0.5 * 0.1 * w = 0.95 w
    torch.testing.assert_close(p.detach(), torch.tensor([1.9, -3.8], dtype=torch.float64))


def test_momentum_accumulates() -> None:
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = NTASGD([p], lr=0.1, momentum=0.9)
    for _ in range(3):
        p.grad = torch.ones_like(p)
        opt.step()
    # buffers 1, 1.9, 2.71: w = -0.1 * (1 + 1.9 + 2.71) = -0.561
    torch.testing.assert_close(p.detach(), torch.tensor([-0.561], dtype=torch.float64))


def test_average_beats_last_iterate_on_noisy_quadratic() -> None:
    # f(w) = ||w - w*||^2 / 2 with additive gradient noise: constant-step SGD keeps bouncing around
    # w* with variance ~ lr * sigma^2 / 2 per coordinate, while the Polyak average of K iterates
    # has variance ~ sigma^2 / K (Polyak & Juditsky 1992).
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(20, generator=gen, dtype=torch.float64)
    w = torch.nn.Parameter(torch.zeros(20, dtype=torch.float64))
    opt = NTASGD([w], lr=0.1)
    for step in range(600):
        if step == 100:
            opt.start_averaging()
        w.grad = (w.detach() - target) + torch.randn(20, generator=gen, dtype=torch.float64)
        opt.step()
    last_error = (w.detach() - target).norm().item()
    with opt.averaged():
        avg_error = (w.detach() - target).norm().item()
    assert avg_error < 0.5 * last_error


def test_state_dict_round_trip_continues_bitwise() -> None:
    losses = [5.0, 4.0, 3.0, 3.5, 4.5]  # fires at the fifth check with n = 2

    def run(params, opt, steps):
        for step in steps:
            _quad_step(params, opt, step)
            if step < len(losses):
                opt.observe(losses[step])

    full = _params()
    full_opt = NTASGD(full, lr=0.05, momentum=0.9, weight_decay=1e-3, n=2)
    run(full, full_opt, range(12))

    part = _params()
    part_opt = NTASGD(part, lr=0.05, momentum=0.9, weight_decay=1e-3, n=2)
    run(part, part_opt, range(8))
    assert part_opt.averaging
    buffer = io.BytesIO()
    torch.save({"params": _snapshot(part), "opt": part_opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    resumed = [torch.nn.Parameter(t) for t in saved["params"]]
    resumed_opt = NTASGD(resumed, lr=0.05, momentum=0.9, weight_decay=1e-3, n=2)
    resumed_opt.load_state_dict(saved["opt"])
    assert resumed_opt.averaging and resumed_opt.trigger.history == losses
    run(resumed, resumed_opt, range(8, 12))

    _assert_bitwise(_snapshot(resumed), _snapshot(full))
    for p, q in zip(resumed, full, strict=True):
        for key in ("ax", "momentum_buffer"):
            assert torch.equal(resumed_opt.state[p][key], full_opt.state[q][key])
        assert resumed_opt.state[p]["ax_count"] == full_opt.state[q]["ax_count"] == 7  # steps 5..11


def test_load_state_dict_rejects_foreign_state() -> None:
    params = _params()
    sgd_state = torch.optim.SGD(params, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="nt_asgd"):
        NTASGD(params, lr=0.1).load_state_dict(sgd_state)


def test_group_added_after_switch_is_averaged() -> None:
    a, b = _params()
    opt = NTASGD([a], lr=0.1)
    opt.start_averaging()
    opt.add_param_group({"params": [b]})
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    opt.step()
    assert torch.equal(opt.state[b]["ax"], b)


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"lr": 0.0}, ValueError, "lr"), ({"lr": "1"}, TypeError, "lr"),
    ({"lr": 0.1, "momentum": 1.0}, ValueError, "momentum"),
    ({"lr": 0.1, "weight_decay": -1.0}, ValueError, "weight_decay"),
    ({"lr": 0.1, "n": 0}, ValueError, "n"), ({"lr": 0.1, "rule": "arxiv"}, ValueError, "rule"),
])
def test_argument_validation(kwargs: dict, exc: type, name: str) -> None:
    with pytest.raises(exc, match=f"^{name} "):
        NTASGD(_params(), **kwargs)
