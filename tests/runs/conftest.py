"""A tiny trained language-model run, shared by the export and portable-weights tests."""

from __future__ import annotations

import pytest
import torch

from rnnreg.runs.run_dir import RunDir, new_run_dir
from rnnreg.training.loop import train

from lm_fixtures import tiny_config, write_corpus


@pytest.fixture(scope="session")
def tied_lm_run(tmp_path_factory) -> RunDir:
    """Eight steps of the AWD-LSTM preset at toy size, weights tied (its decoder is its embedding)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tmp = tmp_path_factory.mktemp("tied-lm")
        config = tiny_config(write_corpus(tmp / "corpus"), tmp / "runs", "train.max_steps=8", "train.threads=1",
                             "model.tie_weights=true")
        run = new_run_dir(config.train.out_dir, config.name)
        run.write_config(config)
        train(config, run)
    finally:
        torch.set_num_threads(threads)
    return run
