"""The non-monotone trigger, build_optimizer and averaged_parameters."""

from __future__ import annotations

import pytest
import torch

from rnnreg.optim import NTASGD, NonMonotoneTrigger, averaged_parameters, build_optimizer


def _feed(trigger: NonMonotoneTrigger, history: list[float]) -> None:
    for v in history:
        trigger.check(v)


# History and candidate where the two rules disagree, with n = 2:
#   code:  v > min(history[:-2]);   paper: v > min(history[-2:]).
_DISAGREE = [
    # 2.8 still beats the old best min(5, 4) = 4, so "code" waits; it is worse than the recent
    # best min(3, 2.5) = 2.5, so "paper" fires.
    ([5.0, 4.0, 3.0, 2.5], 2.8, {"code": False, "paper": True}),
    # 4 is worse than the old best 1 (never matched since): "code" fires; it beats the recent
    # best min(5, 6) = 5, so "paper" waits.
    ([1.0, 5.0, 6.0], 4.0, {"code": True, "paper": False}),
]


@pytest.mark.parametrize("history,v,expected", _DISAGREE)
@pytest.mark.parametrize("rule", ["code", "paper"])
def test_rules_differ_on_hand_made_histories(history, v, expected, rule) -> None:
    trigger = NonMonotoneTrigger(n=2, rule=rule)
    _feed(trigger, history)
    assert trigger.check(v) is expected[rule]
    assert trigger.history == history + [v]  # appended after the check


@pytest.mark.parametrize("rule", ["code", "paper"])
def test_needs_more_than_n_losses(rule: str) -> None:
    trigger = NonMonotoneTrigger(n=3, rule=rule)
    # t = 0..3 <= n: never fires, however bad the loss.
    assert [trigger.check(v) for v in [1.0, 100.0, 200.0, 300.0]] == [False] * 4
    assert trigger.check(400.0) is True  # t = 4 > 3, worse than every window


@pytest.mark.parametrize("rule", ["code", "paper"])
def test_never_fires_while_improving(rule: str) -> None:
    trigger = NonMonotoneTrigger(n=2, rule=rule)
    assert not any(trigger.check(10.0 - i) for i in range(10))


def test_code_rule_is_awd_expression() -> None:
    # AWD-LSTM main.py: len(best_val_loss) > nonmono and val_loss > min(best_val_loss[:-nonmono]),
    # evaluated before appending, over a noisy sequence.
    losses = [6.0, 5.0, 5.5, 4.8, 4.9, 5.1, 4.7, 4.95, 5.2, 5.0, 4.85]
    trigger = NonMonotoneTrigger(n=3, rule="code")
    for t, v in enumerate(losses):
        past = losses[:t]
        assert trigger.check(v) == (len(past) > 3 and v > min(past[:-3]))


def test_nan_never_fires_and_tensor_accepted() -> None:
    trigger = NonMonotoneTrigger(n=1)
    _feed(trigger, [1.0, 2.0])
    assert trigger.check(float("nan")) is False
    assert trigger.check(torch.tensor(5.0)) is True
    assert isinstance(trigger.history[-1], float)


def test_trigger_state_round_trip() -> None:
    trigger = NonMonotoneTrigger(n=2, rule="paper")
    _feed(trigger, [3.0, 2.0, 2.5])
    restored = NonMonotoneTrigger()
    restored.load_state_dict(trigger.state_dict())
    assert (restored.n, restored.rule, restored.history) == (2, "paper", [3.0, 2.0, 2.5])
    assert restored.check(2.1) == trigger.check(2.1) is True


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"n": 0}, ValueError, "n"), ({"n": 2.0}, TypeError, "n"),
    ({"rule": "arxiv"}, ValueError, "rule"),
])
def test_trigger_validation(kwargs: dict, exc: type, name: str) -> None:
    with pytest.raises(exc, match=f"^{name} "):
        NonMonotoneTrigger(**kwargs)
    with pytest.raises(TypeError, match="^val_loss "):
        NonMonotoneTrigger().check("1.0")


def _model() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("rmsprop", torch.optim.RMSprop), ("asgd", torch.optim.ASGD),
                                      ("nt_asgd", NTASGD)])
def test_build_optimizer_types_and_settings(name: str, cls: type) -> None:
    momentum = 0.9 if name in ("sgd", "rmsprop", "nt_asgd") else 0.0
    opt = build_optimizer(name, _model().parameters(), lr=0.3, momentum=momentum,
                          weight_decay=1e-4, nonmono=3, trigger_rule="paper", asgd_t0=7, rmsprop_alpha=0.5)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.3, 1e-4)
    if name == "asgd":
        assert (group["lambd"], group["t0"]) == (0.0, 7)
    if name == "rmsprop":
        assert (group["alpha"], group["momentum"]) == (0.5, 0.9)
    if name == "nt_asgd":
        assert (opt.trigger.n, opt.trigger.rule, group["momentum"]) == (3, "paper", 0.9)


def test_build_optimizer_rejects_unknown_name_and_stray_momentum() -> None:
    with pytest.raises(ValueError, match="^name .*'sgd'.*'adam'.*'rmsprop'.*'asgd'.*'nt_asgd'"):
        build_optimizer("adagrad", _model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="^rmsprop_alpha "):
        build_optimizer("rmsprop", _model().parameters(), lr=0.1, rmsprop_alpha=1.0)
    with pytest.raises(ValueError, match="^momentum "):
        build_optimizer("adam", _model().parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="^lr "):
        build_optimizer("sgd", _model().parameters(), lr=-1.0)


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(8, 4, generator=gen)).pow(2).mean().backward()
        opt.step()


def _values(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _holds(model: torch.nn.Module, values: list[torch.Tensor]) -> bool:
    """Whether the model's parameters equal ``values`` bitwise."""
    return all(torch.equal(p, v) for p, v in zip(model.parameters(), values, strict=True))


def test_averaged_parameters_swaps_torch_asgd_ax() -> None:
    model = _model()
    opt = build_optimizer("asgd", model.parameters(), lr=0.1)
    raw = _values(model)
    with averaged_parameters(opt):  # no step yet: no 'ax' anywhere, and no KeyError
        assert _holds(model, raw)
    _train(model, opt, 5)
    raw = _values(model)
    with pytest.raises(KeyError):
        with averaged_parameters(opt):
            for p, r in zip(model.parameters(), raw, strict=True):
                assert torch.equal(p, opt.state[p]["ax"]) and not torch.equal(p, r)
            raise KeyError("exception inside the block")
    assert _holds(model, raw)


def test_averaged_parameters_delegates_to_ntasgd() -> None:
    model = _model()
    opt = build_optimizer("nt_asgd", model.parameters(), lr=0.1)
    opt.start_averaging()
    _train(model, opt, 4)
    with opt.averaged():
        expected = _values(model)
    raw = _values(model)
    with averaged_parameters(opt):
        assert _holds(model, expected)
    assert _holds(model, raw)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_averaged_parameters_is_noop_without_averages(name: str) -> None:
    model = _model()
    opt = build_optimizer(name, model.parameters(), lr=0.1)
    _train(model, opt, 3)
    raw = _values(model)
    with averaged_parameters(opt):
        assert _holds(model, raw)
    assert _holds(model, raw)
