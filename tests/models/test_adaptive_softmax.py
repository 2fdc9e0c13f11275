"""The adaptive softmax for word ids in any order (models/adaptive_softmax.py) and in the
language model: exact log-probabilities, frequency order, tying, training."""

import math

import pytest
import torch
import torch.nn.functional as F

from rnnreg.models import RNNLanguageModel
from rnnreg.models.adaptive_softmax import AdaptiveSoftmax

V, E = 40, 8


def _order(seed: int = 0) -> list[int]:
    return torch.randperm(V, generator=torch.Generator().manual_seed(seed)).tolist()


def _lm(**kwargs):
    torch.manual_seed(0)
    base = dict(embedding_size=E, hidden_size=12, num_layers=2, softmax="adaptive", adaptive_cutoffs=(5, 15),
                adaptive_div_value=2.0, frequency_order=_order())
    return RNNLanguageModel(V, **{**base, **kwargs})


def test_log_probs_sum_to_one_over_the_vocabulary():
    head = AdaptiveSoftmax(E, V, [5, 15], div_value=2.0, frequency_order=_order())
    log_p = head.full_log_probs(torch.randn(7, E, dtype=torch.float64).float())  # (7, V)
    assert log_p.shape == (7, V)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(7))


def test_target_scores_equal_the_full_distribution_in_id_order():
    head = AdaptiveSoftmax(E, V, [5, 15], div_value=2.0, frequency_order=_order())
    hidden, targets = torch.randn(30, E), torch.randint(V, (30,))
    full = head.full_log_probs(hidden).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(head.token_log_probs(hidden, targets), full)


def test_target_scores_are_torch_s_forward_bit_for_bit():
    """token_log_probs is torch's forward, step for step: the same bits in float32 and float64."""
    for dtype in (torch.float32, torch.float64):
        head = AdaptiveSoftmax(E, V, [5, 15], div_value=2.0, frequency_order=_order()).to(dtype)
        hidden, targets = torch.randn(50, E, dtype=dtype), torch.randint(V, (50,))
        want = torch.nn.AdaptiveLogSoftmaxWithLoss.forward(head, hidden, head.rank[targets]).output
        got = head.token_log_probs(hidden, targets)
        assert got.dtype == dtype and torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_target_scores_under_autocast_are_float32_and_close(dtype):
    """torch's forward fails under CPU autocast (index_copy_ of bf16 log-probs into its float32
    output); ours takes each log-softmax in float32."""
    head = AdaptiveSoftmax(E, V, [5, 15], div_value=2.0, frequency_order=_order())
    hidden, targets = torch.randn(50, E), torch.randint(V, (50,))
    want = head.token_log_probs(hidden, targets)
    with torch.autocast("cpu", dtype=dtype):
        got = head.token_log_probs(hidden, targets)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=5e-2, rtol=0)


def test_clusters_follow_frequency_order_not_ids():
    order = _order(3)
    head = AdaptiveSoftmax(E, V, [5, 15], div_value=2.0, frequency_order=order)
    # the five most frequent ids are the head's shortlist: each scored by the head alone
    shortlist = torch.tensor(order[:5])
    hidden = torch.randn(5, E)
    direct = F.log_softmax(head.head(hidden), dim=1).gather(1, torch.arange(5)[:, None]).squeeze(1)
    torch.testing.assert_close(head.token_log_probs(hidden, shortlist), direct)


@pytest.mark.parametrize("order", [[0] * V, list(range(V - 1)), list(range(1, V + 1))])
def test_a_bad_frequency_order_is_refused(order):
    with pytest.raises(ValueError, match="frequency_order"):
        AdaptiveSoftmax(E, V, [5, 15], div_value=2.0, frequency_order=order)


def test_language_model_nll_is_exact_and_forms_no_logits_with_targets():
    lm = _lm().eval()
    x, y = torch.randint(V, (6, 3)), torch.randint(V, (6, 3))
    with torch.no_grad():
        scored, full = lm(x, targets=y), lm(x)
    assert scored.logits is None and scored.nll.shape == (6, 3) and scored.nll.dtype == torch.float32
    assert full.logits.shape == (6, 3, V) and full.nll is None
    torch.testing.assert_close(full.logits.exp().sum(-1), torch.ones(6, 3))
    torch.testing.assert_close(scored.nll, -full.logits.gather(2, y[..., None]).squeeze(2))


def test_tied_embedding_is_the_output_vectors_in_id_order():
    lm = _lm(tie_weights=True, adaptive_div_value=1.0)
    assert lm.encoder is None and lm.sizes[-1] == E
    weight = lm.adaptive.embedding_weight()  # (V, E)
    order = _order()
    # the most frequent word's embedding is the head's first row
    torch.testing.assert_close(weight[order[0]], lm.adaptive.head.weight[0])
    # and the least frequent one's is the last tail's last output row
    torch.testing.assert_close(weight[order[-1]], lm.adaptive.tail[-1][1].weight[-1])
    tokens = torch.tensor([[order[0]], [order[-1]]])  # (2, 1)
    torch.testing.assert_close(lm.eval().embed(tokens)[:, 0], weight[tokens[:, 0]])


def test_tied_adaptive_trains_one_set_of_vectors():
    lm = _lm(tie_weights=True, adaptive_div_value=1.0, embed_p=0.2).train()
    names = {n for n, _ in lm.named_parameters()}
    assert not any(n.startswith("encoder") for n in names)
    x, y = torch.randint(V, (5, 2)), torch.randint(V, (5, 2))
    lm(x, targets=y).nll.mean().backward()
    assert lm.adaptive.head.weight.grad is not None and lm.adaptive.tail[0][1].weight.grad.abs().sum() > 0


def test_a_tail_projection_of_zero_units_is_refused():
    with pytest.raises(ValueError, match="0 units"):
        AdaptiveSoftmax(E, V, [5, 15], div_value=4.0)


def test_tying_needs_div_value_one():
    with pytest.raises(ValueError, match="div_value = 1"):
        _lm(tie_weights=True, adaptive_div_value=2.0)


def test_rank_is_stored_with_the_weights():
    lm = _lm()
    state = lm.state_dict()
    assert torch.equal(state["adaptive.rank"][torch.tensor(_order())], torch.arange(V))
    again = _lm(frequency_order=None)  # a rebuilt model gets its order from the checkpoint
    again.load_state_dict(state)
    x, y = torch.randint(V, (4, 2)), torch.randint(V, (4, 2))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x, targets=y).nll, lm.eval()(x, targets=y).nll)


def test_untrained_loss_is_near_uniform():
    lm = _lm().eval()
    with torch.no_grad():
        nll = lm(torch.randint(V, (20, 4)), targets=torch.randint(V, (20, 4))).nll
    assert abs(nll.mean().item() - math.log(V)) < 1.0


def test_embed_gathers_what_the_whole_matrix_holds_and_trains_the_same():
    head = AdaptiveSoftmax(E, V, [5, 15], div_value=1.0, frequency_order=_order(2))
    tokens = torch.randint(V, (6, 3))
    torch.testing.assert_close(head.embed(tokens), head.embedding_weight()[tokens])
    head.embed(tokens).pow(2).sum().backward()
    gathered = {n: p.grad for n, p in head.named_parameters()}
    head.zero_grad(set_to_none=True)
    head.embedding_weight()[tokens].pow(2).sum().backward()
    whole = {n: p.grad for n, p in head.named_parameters()}
    assert {n for n, g in gathered.items() if g is not None} == {"head.weight", "tail.0.1.weight", "tail.1.1.weight"}
    for name, grad in gathered.items():
        if grad is not None:
            torch.testing.assert_close(grad, whole[name])


def test_embedding_dropout_drops_whole_words():
    head = AdaptiveSoftmax(E, V, [5, 15], div_value=1.0, frequency_order=_order())
    tokens = torch.arange(V).repeat(4, 1)  # (4, V): every word four times
    torch.manual_seed(0)
    out = head.embed(tokens, 0.5, True)  # (4, V, E)
    dropped = (out == 0).all(-1)  # (4, V)
    assert torch.equal(dropped, dropped[:1].expand_as(dropped)) and 0 < dropped[0].sum() < V
    kept = ~dropped[0]
    torch.testing.assert_close(out[0, kept], 2 * head.embedding_weight()[kept])
    assert torch.equal(head.embed(tokens, 0.5, False), head.embed(tokens))
