"""A config file without ``base`` starts from the quickstart's model and budget, not from the
schema's AWD-sized defaults (a 3 x 1150 LSTM with no time limit)."""

from __future__ import annotations

import pytest

from rnnreg.config import Config, load_config


def _file(tmp_path, text: str = "") -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


def test_an_empty_file_trains_the_quickstart_model_with_its_budget(tmp_path):
    config, quickstart = load_config(_file(tmp_path)), load_config("quickstart")
    assert Config().model.hidden_size == 1150 and Config().train.max_minutes == 0   # what it was
    assert config.model == quickstart.model and config.optim == quickstart.optim
    assert config.penalties == quickstart.penalties
    assert config.train.max_minutes == 3.0 and config.train.epochs == quickstart.train.epochs
    # Its own name and no borrowed description, corpus-bound prime or metric.
    assert config.name == "mine" and config.description == ""
    assert config.train.sample_prime == "" and config.expect.metric == "auto"


def test_the_file_and_overrides_win_over_the_default(tmp_path):
    source = _file(tmp_path, "[model]\nhidden_size = 96\n[train]\nmax_minutes = 0.5\n")
    config = load_config(source, ["optim.lr=0.01"])
    assert config.model.hidden_size == 96 and config.model.num_layers == 2
    assert config.train.max_minutes == 0.5 and config.optim.lr == 0.01 and config.optim.optimizer == "adam"


def test_a_word_level_corpus_does_not_inherit_the_character_metric(tmp_path):
    config = load_config(_file(tmp_path, '[data]\ndataset = "ptb"\n'))
    assert config.data.dataset == "ptb" and config.expect.metric == "auto"


@pytest.mark.parametrize("text, overrides", [
    ('[task]\nkind = "adding"\n', []),
    ("", ["task.kind=mnist"]),
    ('[task]\nkind = "seq2seq"\n', []),
    ('[task]\nkind = "ctc"\n', []),
    ('[task]\nkind = "missing"\n[model]\ncell = "grud"\n', []),
    ('[task]\nkind = "clockwork"\n[model]\ncell = "clockwork"\nclockwork_periods = [1, 2, 4]\n', []),
])
def test_other_kinds_and_cells_take_only_what_applies_to_them(tmp_path, text, overrides):
    """The quickstart's BPTT windows, sample settings or LSTM options would be refused as
    settings the kind or cell does not read; they are left out of the default instead."""
    config = load_config(_file(tmp_path, text), overrides)
    assert config.train.max_minutes == 3.0 and config.optim.optimizer == "adam"
    assert config.model.hidden_size == 256


def test_a_file_with_a_base_keeps_it(tmp_path):
    config = load_config(_file(tmp_path, 'base = "awd-lstm-ptb"\n'))
    assert config.model.hidden_size == 1150 and config.data.dataset == "ptb"


def test_a_preset_is_not_changed(tmp_path):
    awd = load_config("awd-lstm-ptb")
    assert awd.model.num_layers == 3 and awd.train.max_minutes == 0
