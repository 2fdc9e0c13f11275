"""GRU-D (Che et al. 2018): decay shapes, the GRU it reduces to, the fast/reference twins (the
fast loop's step op by op and compiled), padding, and the regularizers' train/eval behaviour."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

import rnnreg
from rnnreg.layers.grud import GRUD
from rnnreg.layers.grud_inputs import last_observed
from rnnreg.layers import grud_step
from rnnreg.layers.grud_step import compiles_by_default
from rnnreg.regularizers.step_noise import StepNoise

T, B, D, H = 6, 3, 4, 5


pytestmark = pytest.mark.usefixtures("one_thread")


def inputs(seed=0, steps=T, batch=B, features=D, observed_p=0.5):
    """x with NaN in its missing slots (they must never leak), mask, positive delta, x_last."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, features, generator=gen, dtype=torch.double)
    mask = (torch.rand(steps, batch, features, generator=gen) < observed_p).double()
    delta = 3 * torch.rand(steps, batch, features, generator=gen, dtype=torch.double)
    x_last = torch.randn(steps, batch, features, generator=gen, dtype=torch.double)
    return x.masked_fill(mask == 0, float("nan")), mask, delta, x_last


def layer(seed=0, **kw):
    torch.manual_seed(seed)
    return GRUD(kw.pop("input_size", D), kw.pop("hidden_size", H), x_mean=torch.randn(D), **kw).double()


def test_hidden_decay_maps_the_D_intervals_to_the_H_hidden_units():
    grud = GRUD(3, 7)
    assert grud.hidden_decay_weight.shape == (7, 3) and grud.hidden_decay_bias.shape == (7,)
    gamma_x, gamma_h = grud.decays(torch.rand(T, B, 3))
    assert gamma_x.shape == (T, B, 3) and gamma_h.shape == (T, B, 7)
    out, h_n = grud(torch.randn(T, B, 3), torch.ones(T, B, 3), torch.rand(T, B, 3))
    assert out.shape == (T, B, 7) and h_n.shape == (1, B, 7)


def test_hidden_decay_is_a_full_matrix_not_elementwise_on_delta():
    # H == D so that a (buggy) elementwise gamma_h = f(w * delta) would fit the shapes; with a
    # full W_gh, one variable's interval moves the decay of every hidden unit.
    grud = GRUD(D, D)
    delta = torch.rand(1, 1, D) + 0.5
    bumped = delta.clone()
    bumped[..., 0] += 1.0
    changed = grud.decays(bumped)[1] != grud.decays(delta)[1]
    assert changed.all()


def test_input_decay_is_diagonal_each_variable_decays_on_its_own_interval():
    grud = layer()
    assert grud.input_decay_weight.shape == (D,)
    x, _, delta, x_last = inputs()
    nothing = torch.zeros_like(x)  # all missing: every entry is imputed
    for j in range(D):
        bumped = delta.clone()
        bumped[..., j] += 1.0
        diff = grud.impute(x, nothing, bumped, x_last) != grud.impute(x, nothing, delta, x_last)
        assert diff[..., j].all() and not diff[..., [k for k in range(D) if k != j]].any()


def test_no_time_elapsed_means_no_decay():
    grud = layer()
    zero = torch.zeros(T, B, D, dtype=torch.double)
    gamma_x, gamma_h = grud.decays(zero)  # biases start at 0: exp(-max(0, 0)) = 1
    assert (gamma_x == 1).all() and (gamma_h == 1).all()
    with torch.no_grad():  # a negative bias is clipped by max(0, .): still no decay
        grud.input_decay_bias.fill_(-0.3)
        grud.hidden_decay_bias.fill_(-0.3)
    assert all((g == 1).all() for g in grud.decays(zero))
    x, _, _, x_last = inputs()
    torch.testing.assert_close(grud.impute(x, torch.zeros_like(x), zero, x_last), x_last)


def test_decay_shrinks_with_time_and_imputation_moves_to_the_mean():
    grud = layer()
    x, _, _, x_last = inputs()
    nothing = torch.zeros_like(x)
    gammas = [grud.decays(torch.full((1, 1, D), t, dtype=torch.double)) for t in (0.0, 1.0, 10.0, 1e4)]
    for (gx0, gh0), (gx1, gh1) in itertools.pairwise(gammas):
        assert (gx1 <= gx0).all() and (gh1 <= gh0).all()
    assert all((g > 0).all() and (g <= 1).all() for pair in gammas[:3] for g in pair)
    far = grud.impute(x, nothing, torch.full_like(x, 1e6), x_last)
    torch.testing.assert_close(far, grud.x_mean.double().expand_as(x))


def copy_to_gru(grud, gru):
    with torch.no_grad():  # torch's GRU on [x, m]: its input weights are [W | V]
        gru.weight_ih_l0.copy_(torch.cat([grud.weight_ih, grud.weight_mh], 1))
        gru.weight_hh_l0.copy_(grud.weight_hh)
        gru.bias_ih_l0.copy_(grud.bias_ih)
        gru.bias_hh_l0.copy_(grud.bias_hh)
    return gru


@pytest.mark.parametrize("implementation", ["fast", "reference"])
def test_all_observed_with_zero_intervals_is_a_torch_gru_on_values_and_mask(implementation):
    grud = layer(implementation=implementation)
    gru = copy_to_gru(grud, torch.nn.GRU(2 * D, H).double())
    x = torch.randn(T, B, D, dtype=torch.double)
    ones, zero = torch.ones_like(x), torch.zeros_like(x)
    h0 = torch.randn(1, B, H, dtype=torch.double)
    out, h_n = grud(x, ones, zero, h0=h0)
    expected, expected_h = gru(torch.cat([x, ones], -1), h0)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(h_n, expected_h)


def run(grud, x, mask, delta, x_last, lengths, noise, h0):
    grud.zero_grad()
    x = x.clone().requires_grad_(True)
    out, h_n = grud(x, mask, delta, x_last, h0, lengths=lengths, noise=noise)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    ((out * weights).sum() + h_n.sum()).backward()
    return out.detach(), h_n.detach(), {n: p.grad.clone() for n, p in grud.named_parameters()}, x.grad


@pytest.mark.parametrize("options", [{}, {"recurrent_dropout": 0.3, "zoneout_h_p": 0.2},
                                     {"recurrent_dropout": 0.3, "recurrent_dropout_mode": "semeniuta"}])
def test_fast_path_matches_the_step_by_step_reference_in_outputs_and_gradients(options):
    x, mask, delta, x_last = inputs(seed=1)
    lengths = torch.tensor([T, 4, 2])
    h0 = torch.randn(1, B, H, dtype=torch.double)
    fast, reference = layer(**options), layer(implementation="reference", **options)
    reference.load_state_dict(fast.state_dict())
    torch.manual_seed(3)
    noise = fast.draw_noise(T, B, x)  # the same draws for both
    a = run(fast, x, mask, delta, x_last, lengths, noise, h0)
    b = run(reference, x, mask, delta, x_last, lengths, noise, h0)
    for u, v in zip(a[:2], b[:2]):
        torch.testing.assert_close(u, v)
    assert a[2].keys() == b[2].keys()
    for name in a[2]:
        torch.testing.assert_close(a[2][name], b[2][name], msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(a[3], b[3])
    assert torch.isfinite(a[3]).all() and (a[3][mask == 0] == 0).all()  # NaN slots get no gradient


def test_x_last_computed_inside_equals_x_last_passed_in():
    grud = layer().eval()
    x, mask, delta, _ = inputs(seed=2)
    given = last_observed(x, mask, grud.x_mean.double())
    torch.testing.assert_close(grud(x, mask, delta)[0], grud(x, mask, delta, given)[0])


def test_padding_freezes_the_state_and_zeroes_the_output():
    grud = layer().eval()
    x, mask, delta, x_last = inputs(seed=4)
    out, h_n = grud(x, mask, delta, x_last, lengths=torch.tensor([T, 3, 1]))
    for b, length in enumerate((T, 3, 1)):
        alone, alone_h = grud(*(t[:length, b:b + 1] for t in (x, mask, delta, x_last)))
        torch.testing.assert_close(out[:length, b:b + 1], alone)
        torch.testing.assert_close(h_n[:, b:b + 1], alone_h)
        assert (out[length:, b] == 0).all()


def test_zoneout_that_keeps_everything_leaves_only_the_decay():
    grud = layer()
    x, mask, delta, x_last = inputs(seed=5)
    h0 = torch.randn(1, B, H, dtype=torch.double)
    keep_all = StepNoise(keep_h=torch.ones(T, B, H, dtype=torch.double))
    out, _ = grud(x, mask, delta, x_last, h0, noise=keep_all)
    gamma_h = grud.decays(delta)[1]  # (T, B, H)
    torch.testing.assert_close(out, h0 * gamma_h.cumprod(0))


def test_regularizers_are_the_identity_or_the_expectation_in_eval():
    x, mask, delta, x_last = inputs(seed=6)
    plain = layer().eval()
    for options in ({"recurrent_dropout": 0.5}, {"recurrent_dropout": 0.5, "recurrent_dropout_mode": "semeniuta"}):
        regularized = layer(**options).eval()
        torch.testing.assert_close(regularized(x, mask, delta, x_last)[0], plain(x, mask, delta, x_last)[0])
        regularized.train()
        assert not torch.equal(regularized(x, mask, delta, x_last)[0], plain(x, mask, delta, x_last)[0])
    # Zoneout in eval: h = p h_prev + (1 - p) h_new, as rnnreg.GRU (Krueger et al. 2017).
    zoned = layer(zoneout_h_p=0.3).eval()
    gru = copy_to_gru(zoned, rnnreg.GRU(2 * D, H, zoneout_h_p=0.3).double()).eval()
    observed = torch.randn(T, B, D, dtype=torch.double)
    ones = torch.ones_like(observed)
    torch.testing.assert_close(zoned(observed, ones, torch.zeros_like(observed))[0],
                               gru(torch.cat([observed, ones], -1))[0])


def test_training_noise_is_per_sequence_for_gal_and_fresh_per_step_for_semeniuta():
    like = torch.zeros(1, dtype=torch.double)
    gal = layer(recurrent_dropout=0.5, zoneout_h_p=0.2).draw_noise(T, B, like)
    assert gal.rec.shape == (B, H) and gal.update is None and gal.keep_h.shape == (T, B, H)
    assert set(gal.keep_h.unique().tolist()) <= {0.0, 1.0}
    semeniuta = layer(recurrent_dropout=0.5, recurrent_dropout_mode="semeniuta").draw_noise(T, B, like)
    assert semeniuta.rec is None and semeniuta.update.shape == (T, B, H)
    quiet = layer(recurrent_dropout=0.5, zoneout_h_p=0.2).eval().draw_noise(T, B, like)
    assert quiet.rec is None and quiet.update is None and (quiet.keep_h == 0.2).all()
    torch.manual_seed(9)
    first = layer(recurrent_dropout=0.5).draw_noise(T, B, like).rec
    torch.manual_seed(9)
    assert torch.equal(first, layer(recurrent_dropout=0.5).draw_noise(T, B, like).rec)


def test_decay_parameters_learn_from_the_start():
    grud = layer()
    x, mask, delta, x_last = inputs(seed=7)
    grud(x, mask, delta, x_last)[0].sum().backward()
    for p in (grud.input_decay_weight, grud.hidden_decay_weight, grud.input_decay_bias, grud.hidden_decay_bias):
        assert p.grad.abs().sum() > 0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="hidden_size"):
        GRUD(3, 0)
    with pytest.raises(ValueError, match="zoneout_h_p"):
        GRUD(3, 4, zoneout_h_p=1.0)
    with pytest.raises(ValueError, match="x_mean"):
        GRUD(3, 4, x_mean=torch.zeros(4))
    with pytest.raises(ValueError, match="recurrent_dropout_mode"):
        GRUD(3, 4, recurrent_dropout_mode="zaremba")
    with pytest.raises(ValueError, match="mask"):
        GRUD(3, 4)(torch.zeros(T, B, 3), torch.zeros(T, B, 2), torch.zeros(T, B, 3))


def backward_nodes(out) -> list[str]:
    """The names of every node in out's autograd graph, each node once."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(next_node for next_node, _ in node.next_functions)
    return [type(node).__name__ for node in seen]


def test_the_step_compiles_off_the_cpu_only_by_default():
    assert not compiles_by_default(torch.device("cpu"))
    assert compiles_by_default(torch.device("meta"))
    out, _ = layer()(*inputs())
    assert "CompiledFunctionBackward" not in backward_nodes(out)


COMPILED_CASES = [  # (options, lengths, h0 requires grad)
    ({}, None, False),
    ({"recurrent_dropout": 0.3, "zoneout_h_p": 0.2}, torch.tensor([T, 4, 2]), True),
    ({"recurrent_dropout": 0.3, "recurrent_dropout_mode": "semeniuta"}, torch.tensor([T, 4, 2]), False),
]


@pytest.mark.slow  # torch.compile: seconds for the first graph of the process
def test_compiled_step_matches_the_op_by_op_step_and_the_reference():
    """Forced on the CPU: outputs and gradients (parameters, x, h0) equal both twins', every
    regularizer setting shares one graph in training (and one more without grad), and step 0
    runs compiled exactly when h0's requires_grad matches the later states'."""
    counters = torch._dynamo.utils.counters["stats"]
    graphs = counters["unique_graphs"]
    x, mask, delta, x_last = inputs(seed=1)
    for options, lengths, h0_grad in COMPILED_CASES:
        twins = [layer(compile_step=True, **options), layer(compile_step=False, **options),
                 layer(implementation="reference", **options)]
        torch.manual_seed(3)
        noise = twins[0].draw_noise(T, B, x)
        h0 = torch.randn(1, B, H, dtype=torch.double, generator=torch.Generator().manual_seed(4))
        runs = []
        for grud in twins:
            grud.load_state_dict(twins[0].state_dict())
            start = h0.clone().requires_grad_(h0_grad)
            out, h_n, grads, dx = run(grud, x, mask, delta, x_last, lengths, noise, start)
            runs.append([out, h_n, dx, *grads.values(), *([start.grad] if h0_grad else [])])
        for ours, theirs in ((runs[0], runs[1]), (runs[0], runs[2])):
            for u, v in zip(ours, theirs, strict=True):
                torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
        out, _ = twins[0](x, mask, delta, x_last, h0.clone().requires_grad_(h0_grad), noise=noise)
        assert backward_nodes(out).count("CompiledFunctionBackward") == (T if h0_grad else T - 1)
    with torch.no_grad():
        compiled, eager = twins[0].eval(), twins[1].eval()
        torch.testing.assert_close(compiled(x, mask, delta, x_last)[0], eager(x, mask, delta, x_last)[0],
                                   rtol=1e-10, atol=1e-12)
    assert counters["unique_graphs"] - graphs <= 2


def test_past_dynamos_graph_limit_the_step_runs_op_by_op(caplog):
    """With the limit at 0 no new graph may be made (batch 1: a shape no other test compiles)."""
    compiled, eager = layer(compile_step=True), layer(compile_step=False)
    grud_step._log_limit_once.cache_clear()
    with torch._dynamo.config.patch(recompile_limit=0), caplog.at_level(logging.WARNING, grud_step.__name__):
        out, _ = compiled(*inputs(batch=1))
    assert "recompile_limit" in caplog.text
    assert "CompiledFunctionBackward" not in backward_nodes(out)
    torch.testing.assert_close(out, eager(*inputs(batch=1))[0], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("implementation", ["fast", "reference"])
def test_it_runs_under_cpu_autocast_close_to_float32(implementation, dtype):
    torch.manual_seed(0)
    grud = GRUD(D, H, zoneout_h_p=0.2, recurrent_dropout=0.2, implementation=implementation)
    x, delta = torch.randn(9, 2, D), torch.rand(9, 2, D)
    mask = (torch.rand(9, 2, D) > 0.3).float()
    want, _ = grud.eval()(x, mask, delta)
    with torch.autocast("cpu", dtype=dtype):
        got, _ = grud(x, mask, delta)
    torch.testing.assert_close(got.float(), want, atol=3e-2 if dtype == torch.bfloat16 else 3e-3, rtol=0)
    grud.train()
    with torch.autocast("cpu", dtype=dtype):
        out, _ = grud(x, mask, delta)
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in grud.parameters() if p.grad is not None)
