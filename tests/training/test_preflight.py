"""The checks of a config against this machine, made before a run writes anything."""

from __future__ import annotations

import pytest
import torch

from rnnreg.config import load_config
from rnnreg.training.preflight import PreflightError, check


def _config(*overrides: str):
    return load_config("adding-quick", list(overrides))


def test_a_usable_config_passes_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "runs").mkdir()
    check(_config(f"train.out_dir={tmp_path / 'runs'}"))
    check(_config(f"train.out_dir={tmp_path / 'new' / 'deep'}"))        # creatable: fine, not created
    assert [p.name for p in tmp_path.rglob("*")] == ["runs"]


@pytest.mark.parametrize("device, count, message", [
    ("cuda:3", 2, "asks for GPU 3 but there are 2 GPUs"),
    ("cuda:1", 1, "asks for GPU 1 but there is 1 GPU"),
])
def test_a_gpu_index_this_machine_does_not_have(monkeypatch, tmp_path, device, count, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(PreflightError, match=message):
        check(_config(f"train.device={device}", f"train.out_dir={tmp_path}"))
    check(_config("train.device=cuda:0", f"train.out_dir={tmp_path}"))


def test_torchrun_uses_this_ranks_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(PreflightError, match="asks for GPU 1 but there is 1 GPU"):
        check(_config("train.device=cuda", f"train.out_dir={tmp_path}"))


def test_a_language_model_under_torchrun_needs_a_column_per_process(monkeypatch, tmp_path):
    for key, value in {"WORLD_SIZE": "4", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(PreflightError, match=r"data.batch_size \(2\) is smaller than the 4 processes"):
        check(load_config("quickstart", ["data.batch_size=2", f"train.out_dir={tmp_path}"]))
    check(load_config("quickstart", ["data.batch_size=6", f"train.out_dir={tmp_path}"]))   # uneven is allowed


def test_a_resumed_run_needs_its_own_folder_writable(tmp_path):
    check(_config("train.out_dir=/proc/none"), resume_dir=tmp_path)    # out_dir is not where it writes
    with pytest.raises(PreflightError, match="the run directory .* cannot be written to"):
        check(_config(), resume_dir=tmp_path / "gone")
