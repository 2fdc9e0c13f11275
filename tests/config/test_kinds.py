"""Each setting means one thing: settings a task kind does not read are refused when changed and
left out when a config is written, so a language model's config shows no seq2seq settings."""

from __future__ import annotations

import tomllib

import pytest

from rnnreg.cli import main
from rnnreg.config import ConfigError, config_from_dict, dump_config, load_config, preset_names
from rnnreg.config.kinds import KINDS, applies


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_round_trips_through_its_written_form(name):
    config = load_config(name)
    assert config_from_dict(tomllib.loads(dump_config(config))) == config


def test_a_language_model_shows_no_task_settings(capsys):
    assert main(["presets", "show", "zaremba-small"]) == 0
    table = tomllib.loads(capsys.readouterr().out)
    assert table["task"] == {"kind": "lm"}
    assert "clockwork_periods" not in table["model"] and "attention" not in table["model"]
    assert "peepholes" in table["model"] and "nonlinearity" not in table["model"]  # an LSTM's options


def test_a_sequence_task_shows_no_bptt_or_sampling():
    table = tomllib.loads(dump_config(load_config("adding-quick")))
    assert {"bptt", "test_batch_size", "dataset"}.isdisjoint(table["data"])
    assert {"sample_length", "mc_samples"}.isdisjoint(table["train"])
    assert table["task"]["seq_len"] == 100 and "problem" not in table["task"]


@pytest.mark.parametrize("kind, key, value", [
    ("lm", "task.seq_len", 12), ("lm", "task.problem", "reverse"), ("adding", "data.bptt", 35),
    ("adding", "model.tie_weights", True), ("clockwork", "task.valid_size", 8), ("ctc", "task.seq_len", 4),
    ("mnist", "train.sample_length", 5), ("seq2seq", "expect.metric", "bpc"),
])
def test_a_setting_the_kind_does_not_read_is_refused(kind, key, value):
    assert not applies(key, kind)
    with pytest.raises(ConfigError, match=f"{key} does not apply to task.kind = '{kind}'"):
        section, name = key.split(".")
        table = {"task": {"kind": kind}}
        table.setdefault(section, {})[name] = value
        config_from_dict(table)


def test_every_listed_setting_exists_and_every_kind_is_known():
    from rnnreg.config.schema import TASKS, Config

    for key, kinds in KINDS.items():
        section, name = key.split(".")
        assert hasattr(getattr(Config(), section), name), key
        assert set(kinds) <= set(TASKS), key


def test_ctc_reads_timit_only_when_asked_by_name():
    with pytest.raises(ConfigError, match="set data.dataset = 'timit'"):
        config_from_dict({"task": {"kind": "ctc"}, "data": {"path": "/data/timit"}})
    with pytest.raises(ConfigError, match="not on 'ptb'"):
        config_from_dict({"task": {"kind": "ctc"}, "data": {"dataset": "ptb"}})
    timit = config_from_dict({"task": {"kind": "ctc"}, "data": {"dataset": "timit", "path": "/data/timit"}})
    assert timit.data.path == "/data/timit"


def test_ctc_frames_per_label_is_its_own_setting():
    config = config_from_dict({"task": {"kind": "ctc", "frames_per_label": 6}})
    assert config.task.frames_per_label == 6 and config.task.seq_len == 100  # seq_len: untouched


def test_finetune_applies_to_every_kind():
    assert load_config("adding-quick", ["train.finetune_epochs=2"]).train.finetune_epochs == 2
