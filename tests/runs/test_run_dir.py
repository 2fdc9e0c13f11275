"""runs/run_dir.py's resume checks: what a resume may change, against the overrides and against
the config stored in the last checkpoint (config.toml edited by hand since)."""

from __future__ import annotations

from rnnreg.config import config_to_dict, load_config
from rnnreg.runs.run_dir import changed_settings, trained_config_mismatch


def _config(*overrides: str):
    return load_config("quickstart", list(overrides))


def test_a_budget_or_output_may_change_and_nothing_else():
    stored = config_to_dict(_config())
    assert trained_config_mismatch(stored, _config("train.max_steps=9", "train.device=cpu")) is None
    message = trained_config_mismatch(stored, _config("train.precision=bf16", "optim.lr=0.5"))
    assert "optim.lr, train.precision changed since" in message and "\n" not in message
    assert changed_settings(stored, config_to_dict(_config("optim.lr=0.5"))) == ["optim.lr"]


def test_a_checkpoint_from_an_older_rnnreg_is_compared_on_the_settings_both_know():
    """A setting added since (absent from the stored config) or removed since (absent from this
    rnnreg's) is no reason to refuse: the review found config_from_dict raising on the latter."""
    stored = config_to_dict(_config())
    stored["train"]["a_removed_setting"] = 3
    del stored["train"]["precision"]
    assert trained_config_mismatch(stored, _config()) is None
    assert trained_config_mismatch(stored, _config("train.precision=fp16")) is None
    assert "optim.lr" in trained_config_mismatch(stored, _config("optim.lr=0.5"))
