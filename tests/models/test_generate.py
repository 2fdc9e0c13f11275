"""generate(): greedy decoding is the argmax chain of a one-window forward, the temperature is
exactly softmax(logits / T), top_k restricts the support, and a generator makes it reproducible."""

from __future__ import annotations

import pytest
import torch

from rnnreg.models import RNNLanguageModel, SurprisalZoneoutLM, generate

V = 9
SIZES = dict(embedding_size=6, hidden_size=8, num_layers=2)
MODELS = {"plain": lambda: RNNLanguageModel(V, zoneout_h_p=0.1, **SIZES),
          "surprisal": lambda: SurprisalZoneoutLM(V, temperature=2.0, **SIZES)}
PRIME = torch.tensor([1, 4, 2])


def constant(logits: torch.Tensor) -> RNNLanguageModel:
    """A real model whose prediction ignores its input: zero decoder weight, bias = logits."""
    model = RNNLanguageModel(len(logits), embedding_size=2, hidden_size=2, num_layers=1)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.copy_(logits)
    return model


@pytest.mark.parametrize("kind", MODELS)
def test_top_1_is_the_argmax_chain_of_one_long_window(kind):
    torch.manual_seed(0)
    model = MODELS[kind]()
    out = generate(model, PRIME, 12, top_k=1)
    assert out.shape == (12,) and out.dtype == torch.int64
    with torch.no_grad():
        logits = model.eval()(torch.cat([PRIME, out]).view(-1, 1)).logits[:, 0]  # (P+L, V)
    assert torch.equal(logits[len(PRIME) - 1:-1].argmax(-1), out)


@pytest.mark.parametrize("kind", MODELS)
def test_a_seeded_generator_makes_it_deterministic(kind):
    torch.manual_seed(0)
    model = MODELS[kind]()

    def draw(seed: int) -> torch.Tensor:
        return generate(model, PRIME, 40, temperature=1.5, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


@pytest.mark.slow  # 600 one-token steps
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_tokens_follow_softmax_of_logits_over_temperature(temperature):
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    out = generate(constant(logits), PRIME, 600, temperature=temperature,
                   generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(out, minlength=5).float() / 600
    # 600 draws: each frequency's standard error is at most 0.02; the two temperatures' (and
    # their inverses') distributions differ by more than 0.2 somewhere.
    torch.testing.assert_close(freq, torch.softmax(logits / temperature, -1), atol=0.06, rtol=0)


def test_top_k_keeps_only_the_k_most_likely():
    logits = torch.tensor([0.0, 3.0, 0.5, 2.9, 1.0])
    out = generate(constant(logits), PRIME, 200, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(out.tolist()) == {1, 3}
    assert set(generate(constant(logits), PRIME, 200, top_k=50,
                        generator=torch.Generator().manual_seed(0)).tolist()) == set(range(5))


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("nan"), float("inf"), True])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match="temperature"):
        generate(MODELS["plain"](), PRIME, 3, temperature=temperature)


@pytest.mark.parametrize("prime, length, top_k, error, match", [
    (PRIME, 3, -1, ValueError, "top_k"),
    (PRIME, -1, 0, ValueError, "length"),
    (PRIME.float(), 3, 0, TypeError, "prime"),
    (PRIME.view(1, -1), 3, 0, ValueError, "prime"),
    (PRIME[:0], 3, 0, ValueError, "prime"),
])
def test_bad_arguments_are_refused(prime, length, top_k, error, match):
    with pytest.raises(error, match=match):
        generate(MODELS["plain"](), prime, length, top_k=top_k)


def test_modes_are_restored_and_nothing_is_recorded_for_autograd():
    model = MODELS["plain"]().train()
    model.layers[1].eval()
    out = generate(model, PRIME, 5)
    assert model.training and model.layers[0].training and not model.layers[1].training
    assert not out.requires_grad and generate(model, PRIME, 0).shape == (0,)
