"""[evaluation]: the evaluation-time methods' settings (language models only), validated in one
line each, shown only for language models; a reference says which evaluation its number is."""

from __future__ import annotations

import tomllib

import pytest

from rnnreg.config import ConfigError, config_from_dict, dump_config, load_config
from rnnreg.config.schema import EvaluationConfig, Reference
from rnnreg.tasks.build import build_task

from lm_fixtures import write_corpus


def test_the_defaults_are_off_with_the_papers_values():
    e = EvaluationConfig()
    assert e.cache_window == 0 and not e.dynamic                         # nothing runs unless asked
    assert (e.cache_theta, e.cache_lambda) == (1.0, 0.1)                   # Merity et al. 2017, PTB
    assert (e.dynamic_lr, e.dynamic_decay, e.dynamic_epsilon, e.dynamic_bptt, e.dynamic_batch_size) == (
        5e-5, 2e-3, 2e-5, 5, 100)                                          # benkrause/dynamic-evaluation


@pytest.mark.parametrize("override, says", [
    ("evaluation.cache_window=-1", "evaluation.cache_window must be >= 0 (0: off), got -1"),
    ("evaluation.cache_theta=-0.5", "evaluation.cache_theta must be >= 0, got -0.5"),
    ("evaluation.cache_theta=inf", "evaluation.cache_theta must be >= 0"),
    ("evaluation.cache_lambda=1.5", "evaluation.cache_lambda must be in [0, 1], got 1.5"),
    ("evaluation.cache_lambda=nan", "evaluation.cache_lambda must be in [0, 1], got nan"),
    ("evaluation.dynamic_lr=0.0", "evaluation.dynamic_lr must be > 0, got 0.0"),
    ("evaluation.dynamic_epsilon=-1.0", "evaluation.dynamic_epsilon must be > 0"),
    ("evaluation.dynamic_decay=-0.1", "evaluation.dynamic_decay must be >= 0"),
    ("evaluation.dynamic_bptt=0", "evaluation.dynamic_bptt must be >= 1, got 0"),
    ("evaluation.dynamic_batch_size=0", "evaluation.dynamic_batch_size must be >= 1, got 0"),
    ("evaluation.dynamic_max_batches=-2", "evaluation.dynamic_max_batches must be >= 0 (0: all), got -2"),
    ("evaluation.dynamic=1", "evaluation.dynamic must be bool, got int 1"),
    ("evaluation.cache_windw=5", "did you mean 'evaluation.cache_window'?"),
])
def test_bad_values_are_one_line(override, says):
    with pytest.raises(ConfigError) as err:
        load_config("zaremba-small", [override])
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_sequence_task_refuses_and_hides_the_section():
    with pytest.raises(ConfigError, match="evaluation.cache_window does not apply to task.kind = 'adding'"):
        load_config("adding-quick", ["evaluation.cache_window=100"])
    assert "evaluation" not in tomllib.loads(dump_config(load_config("adding-quick")))


def test_a_language_model_writes_and_reads_the_section_back():
    config = load_config("zaremba-small", ["evaluation.cache_window=500", "evaluation.dynamic=true"])
    table = tomllib.loads(dump_config(config))
    assert table["evaluation"]["cache_window"] == 500 and table["evaluation"]["dynamic"] is True
    assert config_from_dict(table) == config
    old = {k: v for k, v in table.items() if k != "evaluation"}          # a config.toml from before [evaluation]
    assert config_from_dict(old).evaluation == EvaluationConfig()


def test_the_builder_hands_the_settings_to_the_language_model_task(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    task = build_task(load_config("zaremba-small", [f"data.dataset={corpus}", "evaluation.cache_window=30",
                                                    "evaluation.cache_lambda=0.25"]))
    assert task.cache == {"window": 30, "theta": 1.0, "lambda": 0.25} and task.dynamic is None
    plain = build_task(load_config("zaremba-small", [f"data.dataset={corpus}", "evaluation.dynamic=true"]))
    assert plain.cache is None and plain.dynamic["lr"] == 5e-5


def test_a_reference_names_its_evaluation():
    assert Reference("paper", 60.0, 58.8).method == "plain"
    assert Reference("paper", test=52.8, method="cache").method == "cache"
    with pytest.raises(ConfigError, match="expect.references.method must be one of plain, cache, dynamic, mc"):
        Reference("paper", method="pointer")
    config = config_from_dict({"expect": {"references": [{"source": "p", "test": 52.8, "method": "dynamic"}]}})
    assert config.expect.references[0].method == "dynamic"
