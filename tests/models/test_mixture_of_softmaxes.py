"""The mixture of softmaxes (Yang et al. 2017) against its equation, and in the language model."""

import pytest
import torch

from rnnreg.models import RNNLanguageModel
from rnnreg.models.mixture_of_softmaxes import MixtureOfSoftmaxes

V, E, H, K = 30, 6, 10, 3


def test_equals_the_mixture_written_out():
    torch.manual_seed(0)
    mos = MixtureOfSoftmaxes(H, E, V, experts=K).eval()
    h = torch.randn(4, 2, H)
    with torch.no_grad():
        got = mos(h)
        prior = torch.softmax(mos.prior(h), -1)  # (T, B, K)
        want = torch.zeros(4, 2, V)
        for k in range(K):
            context = torch.tanh(mos.latent(h)[..., k * E:(k + 1) * E])  # expert k's (T, B, E)
            want += prior[..., k:k + 1] * torch.softmax(mos.decoder(context), -1)
    torch.testing.assert_close(got.exp(), want)
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(4, 2))


def test_one_expert_is_a_softmax_of_a_tanh_context():
    mos = MixtureOfSoftmaxes(H, E, V, experts=1).eval()
    h = torch.randn(3, 2, H)
    with torch.no_grad():
        torch.testing.assert_close(mos(h), torch.log_softmax(mos.decoder(torch.tanh(mos.latent(h))), -1))


def test_latent_dropout_is_locked_and_off_in_eval():
    mos = MixtureOfSoftmaxes(H, E, V, experts=K, latent_p=0.5)
    h = torch.randn(5, 2, H).expand(5, 2, H).clone()
    h[:] = h[0]  # the same input at every step
    out = mos.train()(h)
    # one mask for the whole sequence: equal inputs give equal outputs at every step
    torch.testing.assert_close(out, out[:1].expand_as(out))
    with torch.no_grad():
        torch.testing.assert_close(mos.eval()(h), mos.eval()(h))
    assert not torch.allclose(mos.train()(h), mos.eval()(h))


def test_language_model_with_mos_ties_and_keeps_its_last_layer_size():
    lm = RNNLanguageModel(V, embedding_size=E, hidden_sizes=(12, 9), num_layers=2, tie_weights=True,
                          softmax="mos", mos_experts=K, mos_latent_p=0.1)
    assert lm.sizes == [12, 9] and lm.mos.decoder.weight is lm.encoder.weight
    x, y = torch.randint(V, (5, 2)), torch.randint(V, (5, 2))
    out = lm.eval()(x, targets=y)
    torch.testing.assert_close(out.nll, -out.logits.gather(2, y[..., None]).squeeze(2))
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(5, 2))
    keys = set(lm.state_dict())
    assert {"mos.prior.weight", "mos.latent.weight", "mos.decoder.bias"} <= keys and "decoder.weight" not in keys


@pytest.mark.parametrize("kwargs", [{"experts": 0}, {"experts": K, "latent_p": 1.0}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        MixtureOfSoftmaxes(H, E, V, **kwargs)
