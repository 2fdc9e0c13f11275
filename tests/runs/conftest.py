"""A tiny trained language-model run, shared by the export and portable-weights tests."""

from __future__ import annotations

import pytest

from rnnreg.runs.run_dir import RunDir

from lm_fixtures import train_tiny_run


@pytest.fixture(scope="session")
def tied_lm_run(tmp_path_factory) -> RunDir:
    """Eight steps of the AWD-LSTM preset at toy size, weights tied (its decoder is its embedding)."""
    return train_tiny_run(tmp_path_factory.mktemp("tied-lm"), "train.max_steps=8", "model.tie_weights=true")
