"""ClockworkRNN (Koutnik et al. 2014): clock schedule, block structure, fast == slow twin, regularizers.

The fast path's two backends (kernels/clockwork.py) both run here: the tests taking the
``backend`` fixture route the layer through the Python loop and through the step loop (the
GPU's route, on the CPU with torch pointwise ops) and hold each to the reference."""

from __future__ import annotations

import pytest
import torch

import rnnreg.kernels.clockwork as clockwork_kernel
from rnnreg.kernels.clockwork import clockwork_fast, default_backend
from rnnreg.layers.clockwork import ClockworkRNN
from rnnreg.models.clockwork_net import ClockworkNet
from rnnreg.regularizers.monte_carlo import set_mc_dropout

PERIODS = (1, 2, 4, 8)


def layer(periods=PERIODS, hidden=8, inputs=3, **kw) -> ClockworkRNN:
    torch.manual_seed(0)
    return ClockworkRNN(inputs, hidden, periods, dtype=torch.float64, **kw)


def twins(**kw) -> tuple[ClockworkRNN, ClockworkRNN]:
    fast, slow = layer(**kw), layer(implementation="reference", **kw)
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def run(module, x, hx=None, seed=7, **kw):
    """Forward + backward of a fixed random projection; the same mask seed for both twins."""
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    hx = None if hx is None else hx.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    out, h_n = module(x, hx, **kw)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    ((out * weights).sum() + h_n.pow(2).sum()).backward()
    grads = [p.grad.clone() for p in module.parameters()]
    return out.detach(), h_n.detach(), grads, x.grad.clone(), None if hx is None else hx.grad.clone()


def assert_twins_agree(fast, slow, x, hx=None, **kw):
    a, b = run(fast, x, hx, **kw), run(slow, x, hx, **kw)
    torch.testing.assert_close(a[0], b[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a[1], b[1], rtol=1e-10, atol=1e-12)
    for ga, gb in zip(a[2], b[2]):
        torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(a[3], b[3], rtol=1e-9, atol=1e-11)
    if hx is not None:
        torch.testing.assert_close(a[4], b[4], rtol=1e-9, atol=1e-11)


@pytest.fixture(params=["python", "steploop"])
def backend(request, monkeypatch):
    """The fast path's backend for the layers in one test, whatever the device would pick."""
    monkeypatch.setattr(clockwork_kernel, "default_backend", lambda xw: request.param)
    return request.param


def test_schedule_matches_t_mod_period():
    cw = layer(periods=(1, 3, 4), hidden=6)
    active = cw.active(13, step_offset=2)
    for s in range(13):
        for unit in range(6):
            period = (1, 3, 4)[unit // 2]
            assert bool(active[s, unit]) == ((2 + s) % period == 0)


def test_periods_are_sorted_and_hidden_size_must_divide():
    assert layer(periods=(8, 1, 4, 2)).periods == (1, 2, 4, 8)
    with pytest.raises(ValueError, match="hidden_size"):
        ClockworkRNN(1, 10, (1, 2, 4))
    for bad in ((), (0, 1), (1.5, 2), "12"):
        with pytest.raises(ValueError, match="periods"):
            ClockworkRNN(1, 4, bad)
    with pytest.raises(ValueError, match="nonlinearity"):
        ClockworkRNN(1, 4, (1, 2), nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="zoneout_h_p"):
        ClockworkRNN(1, 4, (1, 2), zoneout_h_p=1.0)


def test_recurrent_matrix_is_block_upper_triangular_and_counts_only_allowed_weights():
    cw = layer(periods=(1, 2, 2, 4), hidden=8)  # module size 2; modules 1 and 2 share a period
    w = cw.recurrent_matrix()
    period = torch.tensor([1, 1, 2, 2, 2, 2, 4, 4])
    allowed = period[None, :] >= period[:, None]  # unit i reads unit j iff T_j >= T_i
    assert torch.all(w[~allowed] == 0)
    assert torch.all(w[allowed] != 0)
    recurrent = sum(p.numel() for p in cw.weight_hh)
    assert recurrent == int(allowed.sum())


def test_slow_modules_never_depend_on_faster_ones(backend):
    """Koutnik et al. 2014 sec. 3: information flows from slower to faster modules only, so the
    slowest module's states have zero gradient w.r.t. the initial state of the faster ones."""
    cw = layer(hidden=8)  # modules of 2 units: periods 1, 2, 4, 8
    h0 = torch.randn(1, 2, 8, dtype=torch.float64, requires_grad=True)
    out, _ = cw(torch.randn(17, 2, 3, dtype=torch.float64), h0)
    (slowest,) = torch.autograd.grad(out[:, :, 6:].sum(), h0, retain_graph=True)  # the period-8 module
    assert torch.all(slowest[..., :6] == 0)
    assert torch.any(slowest[..., 6:] != 0)
    (fastest,) = torch.autograd.grad(out[:, :, 0:2].sum(), h0)  # the fastest module reads everyone
    assert torch.all(fastest != 0)


def test_inactive_modules_hold_their_values_exactly(backend):
    cw = layer(hidden=8)
    h0 = torch.randn(1, 2, 8, dtype=torch.float64)
    out, h_n = cw(torch.randn(12, 2, 3, dtype=torch.float64), h0, step_offset=1)
    states = torch.cat([h0, out])  # (T+1, B, H): states[s] precedes step s
    for s in range(12):
        for module, period in enumerate(PERIODS):
            units = slice(2 * module, 2 * module + 2)
            same = torch.equal(states[s + 1, :, units], states[s, :, units])
            assert same == ((1 + s) % period != 0), (s, period)
    torch.testing.assert_close(h_n, out[-1:])


def test_fast_and_reference_agree_plain(backend):
    fast, slow = twins(periods=(1, 2, 4, 8), hidden=12)
    x = torch.randn(19, 3, 3, dtype=torch.float64)
    node = {"python": "_RecurrenceBackward", "steploop": "RNNStepLoopBackward"}[backend]
    assert type(fast(x)[0].grad_fn).__name__ == node  # the backend asked for is the one that ran
    assert_twins_agree(fast, slow, x, torch.randn(1, 3, 12, dtype=torch.float64))
    assert_twins_agree(fast, slow, x, step_offset=5)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "trec"])
def test_fast_and_reference_agree_with_regularizers_in_training(nonlinearity, backend):
    fast, slow = twins(periods=(3, 1, 2, 2), hidden=8, nonlinearity=nonlinearity,
                       recurrent_dropout=0.3, zoneout_h_p=0.4, trec_threshold=0.2)
    assert_twins_agree(fast, slow, torch.randn(15, 2, 3, dtype=torch.float64), step_offset=1)
    fast.eval(), slow.eval()
    assert_twins_agree(fast, slow, torch.randn(15, 2, 3, dtype=torch.float64))


def test_the_python_loop_runs_on_the_cpu_and_the_step_loop_elsewhere():
    assert default_backend(torch.zeros(1)) == "python"
    assert default_backend(torch.zeros(1, device="meta")) == "steploop"
    xw, h0, w = torch.zeros(2, 1, 4), torch.zeros(1, 4), torch.zeros(4, 4)
    with pytest.raises(ValueError, match="backend"):
        clockwork_fast(xw, h0, w, torch.zeros(2, 1, 4), None, backend="cuda")


def test_regularizers_are_deterministic_in_eval_and_recurrent_dropout_is_identity():
    plain, regular = layer(), layer(recurrent_dropout=0.5)
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    regular.eval()
    torch.testing.assert_close(regular(x)[0], plain(x)[0], rtol=0, atol=0)
    regular.train()
    assert not torch.allclose(regular(x)[0], plain(x)[0])


def test_zoneout_uses_its_expectation_in_eval_and_samples_in_training():
    zoned = layer(zoneout_h_p=0.25)
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    zoned.eval()
    first, second = zoned(x)[0], zoned(x)[0]
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    # Expectation by hand for the first step (every module active at t=0): h = 0.25 h0 + 0.75 f(.)
    h0 = torch.randn(1, 2, 8, dtype=torch.float64)
    plain = layer()
    expected = 0.25 * h0[0] + 0.75 * plain(x[:1], h0)[0][0]
    torch.testing.assert_close(zoned(x[:1], h0)[0][0], expected)
    zoned.train()
    assert not torch.allclose(zoned(x)[0], first)
    set_mc_dropout(zoned.eval(), True)
    assert not torch.allclose(zoned(x)[0], first)


def test_bad_inputs_name_the_argument():
    cw = layer()
    with pytest.raises(ValueError, match="x must be"):
        cw(torch.randn(4, 2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="hx must be"):
        cw(torch.randn(4, 2, 3, dtype=torch.float64), torch.zeros(2, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="step_offset"):
        cw(torch.randn(4, 2, 3, dtype=torch.float64), step_offset=-1)


def test_net_shapes_and_output_dropout():
    torch.manual_seed(0)
    net = ClockworkNet(2, 3, hidden_size=8, clockwork_periods=(1, 2, 4, 8), output_p=0.5)
    out = net(torch.randn(10, 4, 2))
    assert out.prediction.shape == (10, 4, 3)
    assert out.raw[0].shape == out.dropped[0].shape == (10, 4, 8)
    dropped_units = (out.dropped[0] == 0) & (out.raw[0] != 0)
    assert dropped_units.any()
    assert torch.equal(dropped_units, dropped_units[:1].expand_as(dropped_units))  # locked over time
    net.eval()
    out = net(torch.randn(10, 4, 2))
    assert torch.equal(out.raw[0], out.dropped[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("implementation", ["fast", "reference"])
def test_it_runs_under_cpu_autocast_close_to_float32(implementation, dtype):
    """The Python loop's lerp met a low-precision activation and the float32 state under CPU
    autocast and raised; it now computes in float32, and both paths hand on float32."""
    torch.manual_seed(0)
    net = ClockworkRNN(3, 8, PERIODS, zoneout_h_p=0.2, recurrent_dropout=0.2, implementation=implementation)
    x = torch.randn(9, 2, 3)
    want, _ = net.eval()(x)
    with torch.autocast("cpu", dtype=dtype):
        got, _ = net(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=3e-2 if dtype == torch.bfloat16 else 3e-3, rtol=0)
    net.train()
    with torch.autocast("cpu", dtype=dtype):
        out, h_n = net(x)
    (out.sum() + h_n.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)
