"""A language model's metrics from its mean cross-entropy: perplexity and bits per character."""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.tasks.lm_metrics import bits_per_char, metric_fields, metric_value, perplexity


def test_perplexity_and_bpc_invert_their_definitions():
    # A uniform distribution over V symbols has cross-entropy ln V nats: perplexity V, log2 V bits.
    for vocab in (2, 50, 10000):
        assert perplexity(math.log(vocab)) == pytest.approx(vocab)
        assert bits_per_char(math.log(vocab)) == pytest.approx(math.log2(vocab))
        assert metric_value(math.log(vocab), "ppl") == pytest.approx(vocab)
        assert metric_value(math.log(vocab), "bpc") == pytest.approx(math.log2(vocab))
    assert perplexity(torch.tensor(1.5)) == pytest.approx(math.exp(1.5))


def test_conversions_of_diverged_losses():
    assert perplexity(1e4) == math.inf  # math.exp would raise OverflowError
    assert math.isnan(perplexity(math.nan))
    assert math.isnan(bits_per_char(math.nan))


def test_conversion_argument_errors():
    with pytest.raises(ValueError, match="metric"):
        metric_value(1.0, "accuracy")
    with pytest.raises(TypeError, match="loss"):
        perplexity("4.2")
    with pytest.raises(TypeError, match="loss"):
        bits_per_char(True)


def test_metric_fields_fill_the_run_metric_and_leave_the_other_none():
    assert metric_fields(math.log(4), "ppl") == {"loss": math.log(4), "ppl": pytest.approx(4.0), "bpc": None}
    assert metric_fields(math.log(4), "bpc") == {"loss": math.log(4), "ppl": None, "bpc": pytest.approx(2.0)}
