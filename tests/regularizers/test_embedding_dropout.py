"""Embedding dropout (regularizers/embedding_dropout.py): whole word types are dropped, at every
position they occur (Gal & Ghahramani 2016, sec. 4; Merity et al. 2017, sec. 4.3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnreg.regularizers import Embedding, embedding_dropout
from rnnreg.regularizers.masks import dropout_mask

BAD_PROBS = [-0.1, 1.0, math.nan, "0.5"]


def test_embedding_drops_whole_types_and_scales_kept() -> None:
    torch.manual_seed(5)
    V, D, p = 40, 6, 0.5
    emb = Embedding(V, D, embed_p=p).train()
    idx = torch.arange(V).repeat(3, 1)  # (3, V): every type occurs at three positions
    out = emb(idx)  # (3, V, D)
    dropped = kept = 0
    for v in range(V):
        rows = out[:, v]  # (3, D): the three occurrences of type v
        if torch.equal(rows, torch.zeros_like(rows)):
            dropped += 1
        else:
            torch.testing.assert_close(rows, (emb.weight[v] / (1 - p)).expand(3, D))
            kept += 1
    assert dropped > 0 and kept > 0


def test_embedding_last_row_gets_gradient() -> None:
    V, D, p = 10, 4, 0.2
    emb = Embedding(V, D, embed_p=p).train()
    seed = next(s for s in range(100)
                if torch.manual_seed(s) and dropout_mask((V, 1), p, emb.weight)[-1] != 0)
    torch.manual_seed(seed)
    emb(torch.tensor([[V - 1, 1], [V - 1, 2]])).sum().backward()
    torch.testing.assert_close(emb.weight.grad[-1], torch.full((D,), 2 / (1 - p)))
    plain = Embedding(V, D)
    plain(torch.tensor([V - 1])).sum().backward()
    assert torch.equal(plain.weight.grad[-1], torch.ones(D))


def test_embedding_padding_idx_respected() -> None:
    torch.manual_seed(6)
    emb = Embedding(12, 5, padding_idx=0, embed_p=0.5).train()
    idx = torch.tensor([[0, 3, 0], [4, 0, 5]])
    out = emb(idx)
    assert torch.equal(out[idx == 0], torch.zeros(3, 5))
    out.sum().backward()
    assert torch.equal(emb.weight.grad[0], torch.zeros(5))


def test_embedding_state_dict_matches_nn_embedding() -> None:
    ref = nn.Embedding(9, 3, padding_idx=2)
    emb = Embedding(9, 3, padding_idx=2, embed_p=0.4)
    assert list(emb.state_dict()) == list(ref.state_dict()) == ["weight"]
    emb.load_state_dict(ref.state_dict())
    assert torch.equal(emb.weight, ref.weight)
    ref.load_state_dict(emb.state_dict())
    assert "embed_p=0.4" in repr(emb)


def test_embedding_identity_in_eval_and_at_zero_mc_in_eval() -> None:
    torch.manual_seed(7)
    emb = Embedding(20, 4, embed_p=0.5).eval()
    idx = torch.randint(0, 20, (6, 3))
    expected = F.embedding(idx, emb.weight)
    assert torch.equal(emb(idx), expected)
    assert torch.equal(embedding_dropout(emb.weight, idx, 0.0, True), expected)
    no_drop = Embedding(20, 4).train()
    assert torch.equal(no_drop(idx), F.embedding(idx, no_drop.weight))
    emb.mc_dropout = True
    assert not torch.equal(emb(idx), expected)


@pytest.mark.parametrize("bad", BAD_PROBS)
def test_bad_probabilities_rejected(bad: object) -> None:
    w = torch.ones(3, 3)
    for make, name in ((lambda: Embedding(4, 2, embed_p=bad), "embed_p"),
                       (lambda: embedding_dropout(w, torch.tensor([0]), bad, True), "p")):
        with pytest.raises((ValueError, TypeError), match=rf"^{name} must"):
            make()
