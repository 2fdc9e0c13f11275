"""Inputs refused where they are read, in one line: a config file that is not text, a folder
dataset with a path beside it, a learning rate the optimizers cannot represent."""

from __future__ import annotations

import pytest

from rnnreg.config import ConfigError, DataConfig, OptimConfig, load_config


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x81", b"[model]\nhidden_size = 3\n# \xe9t\xe9\n"])
def test_a_file_that_is_not_utf8_text_is_a_config_error(tmp_path, content):
    path = tmp_path / "binary.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"binary.toml is not a UTF-8 text file \(byte \d+"):
        load_config(str(path))


def test_an_unreadable_file_is_a_config_error(tmp_path):
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "folder.toml"))


def test_a_folder_dataset_with_a_path_is_ambiguous(tmp_path):
    with pytest.raises(ConfigError, match="data.path is for a named dataset's files .*'/my/text' is not one"):
        DataConfig(dataset="/my/text", path="/other")
    with pytest.raises(ConfigError, match=r"did you mean 'ptb'\?"):
        DataConfig(dataset="ptbb", path="/data/ptb")


@pytest.mark.parametrize("dataset", ["ptb", "wikitext-2", "tinyshakespeare", "timit"])
def test_a_named_dataset_with_a_path_and_a_folder_alone_are_fine(dataset):
    assert DataConfig(dataset=dataset, path="/data/x").path == "/data/x"
    assert DataConfig(dataset="/my/text").path is None


@pytest.mark.parametrize("lr", [1e38, 1e31, float("inf")])
def test_a_learning_rate_that_overflows_float32_is_refused(lr):
    with pytest.raises(ConfigError, match=r"optim.lr must be at most 1e\+30"):
        OptimConfig(optimizer="adam", lr=lr)


def test_large_but_representable_learning_rates_are_allowed():
    """A divergence experiment (Adam at 1e30) is the user's to run; only overflow is refused."""
    assert OptimConfig(optimizer="adam", lr=1e30).lr == 1e30
    with pytest.raises(ConfigError, match="optim.lr must be > 0"):
        OptimConfig(lr=float("nan"))
