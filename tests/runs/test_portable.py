"""best.safetensors and best.json: the best weights for tools outside rnnreg, tied weights stored
once, written beside every best.pt, atomically and with the run's file permissions."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rnnreg.models import RNNLanguageModel
from rnnreg.runs.checkpoint import CheckpointError, load_checkpoint
from rnnreg.runs.portable import load_portable, portable_paths, save_portable, untie
from rnnreg.runs.trained import load_trained


def _tied_lm() -> RNNLanguageModel:
    torch.manual_seed(0)
    return RNNLanguageModel(13, embedding_size=6, hidden_size=8, num_layers=2, tie_weights=True).eval()


def _payload(model, **extra) -> dict:
    return {"model": model.state_dict(), "config": {"name": "toy", "model": {"hidden_sizes": (8, 6)}},
            "spec": {"vocab": list("abcdefghijklm"), "level": "char"}, "step": 7,
            "scores": {"loss": 2.5, "ppl": float("inf"), "bpc": None}, **extra}


def test_a_tied_weight_is_stored_once_and_restored(tmp_path):
    model = _tied_lm()
    save_portable(tmp_path / "best.pt", _payload(model))
    weights, meta = portable_paths(tmp_path / "best.pt")
    assert (weights.name, meta.name) == ("best.safetensors", "best.json")
    plain = load_file(weights)                   # safetensors alone, no rnnreg
    assert set(model.state_dict()) - set(plain) == {"decoder.weight"}
    assert torch.equal(plain["encoder.weight"], model.encoder.weight)
    with safe_open(weights, "pt") as f:
        assert json.loads(f.metadata()["tied"]) == {"decoder.weight": "encoder.weight"}
    state, info = load_portable(tmp_path / "best.pt")
    other = RNNLanguageModel(13, embedding_size=6, hidden_size=8, num_layers=2, tie_weights=True).eval()
    other.load_state_dict(state)                 # strict: every key is back
    tokens = torch.randint(0, 13, (5, 2))
    assert torch.equal(other(tokens).logits, model(tokens).logits)
    assert info["tied"] == {"decoder.weight": "encoder.weight"} and info["step"] == 7


def test_the_json_is_strict_and_holds_config_vocabulary_and_scores(tmp_path):
    save_portable(tmp_path / "best.pt", _payload(_tied_lm()))
    info = json.loads((tmp_path / "best.json").read_text(), parse_constant=pytest.fail)
    assert info["spec"]["vocab"] == list("abcdefghijklm") and info["config"]["model"]["hidden_sizes"] == [8, 6]
    assert info["scores"] == {"loss": 2.5, "ppl": "inf", "bpc": None}   # strict JSON has no Infinity
    assert info["weights"] == "best.safetensors"


def test_overlapping_but_different_tensors_are_copied():
    base = torch.arange(12.0)
    tensors, tied = untie({"a": base[:8], "b": base[4:], "c": base[:8]})
    assert tied == {"c": "a"}
    assert torch.equal(tensors["b"], base[4:]) and tensors["b"].untyped_storage().data_ptr() != base.data_ptr()


def test_a_pair_from_two_steps_is_refused(tmp_path):
    save_portable(tmp_path / "best.pt", _payload(_tied_lm()))
    meta = (tmp_path / "best.json").read_text()
    save_portable(tmp_path / "best.pt", _payload(RNNLanguageModel(13, embedding_size=6, hidden_size=8)))
    (tmp_path / "best.json").write_text(meta)     # as if a crash fell between the two writes
    with pytest.raises(CheckpointError, match="does not match"):
        load_portable(tmp_path / "best.pt")


def test_a_full_disk_is_one_line_and_keeps_the_previous_files(tmp_path, monkeypatch):
    save_portable(tmp_path / "best.pt", _payload(_tied_lm()))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError) as failed:
        save_portable(tmp_path / "best.pt", _payload(RNNLanguageModel(13, embedding_size=6, hidden_size=8)))
    monkeypatch.undo()
    assert str(failed.value) == (f"disk full while writing {tmp_path / 'best.safetensors'}: "
                                 "the previous file is kept; free some space and try again")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_training_writes_the_pair_beside_best_pt(tied_lm_run):
    run = tied_lm_run
    best = load_checkpoint(run.best)
    state, info = load_portable(run.best)
    assert state.keys() == best["model"].keys()
    assert all(torch.equal(state[k], best["model"][k]) for k in state)
    assert info["step"] == best["step"] and info["scores"] == best["scores"]
    assert info["config"]["name"] == best["config"]["name"] and info["spec"] == best["spec"]
    assert info["tied"] == {"decoder.weight": "encoder.weight"}
    model = load_trained(run).model
    model.load_state_dict(state)


def test_run_files_share_one_permission_mode(tied_lm_run):
    modes = {p.name: p.stat().st_mode & 0o777 for p in tied_lm_run.path.iterdir() if p.is_file()}
    expected = 0o666 & ~_umask()
    assert {name: mode for name, mode in modes.items() if name.startswith(("best", "last"))} == \
        {name: expected for name in modes if name.startswith(("best", "last"))}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
