"""rnnreg export: a trained language model as plain torch.nn layers and as a torch.export program,
both giving rnnreg's logits; what cannot be exported is refused in one line; the README's example
loads an export with rnnreg unimportable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnreg.cli import main
from rnnreg.config import config_to_dict, load_config
from rnnreg.models import RNNLanguageModel, SurprisalZoneoutLM
from rnnreg.models.sequence_net import SequenceNet
from rnnreg.regularizers.monte_carlo import set_mc_dropout
from rnnreg.runs.checkpoint import save_checkpoint
from rnnreg.runs.export import export_run, torch_nn_refusal
from rnnreg.runs.run_dir import new_run_dir
from rnnreg.runs.trained import load_trained
from rnnreg.tasks.build import build_model, build_task
from rnnreg.training.loop import train

from lm_fixtures import tiny_config, write_corpus
from task_fixtures import trained_adding_run

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parents[2] / "README.md"


def _plain_torch_lm(info: dict) -> nn.ModuleDict:
    # Built from export.json alone, as a user without rnnreg would.
    kind = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[info["cell"]]
    E, H, V = info["embedding_size"], info["sizes"], info["vocab_size"]
    return nn.ModuleDict({"encoder": nn.Embedding(V, E), "decoder": nn.Linear(H[-1], V),
                          "layers": nn.ModuleList(kind(i, h) for i, h in zip([E] + H, H))})


def _run_plain(lm: nn.ModuleDict, tokens, state=None):
    x, new = lm["encoder"](tokens), []
    for index, layer in enumerate(lm["layers"]):
        x, s = layer(x, None if state is None else state[index])
        new.append(s)
    return lm["decoder"](x), new


@pytest.fixture(scope="module")
def exported(tied_lm_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return tied_lm_run, out, export_run(tied_lm_run, out)


def test_the_torch_nn_model_gives_rnnreg_logits(exported):
    run, out, result = exported
    assert result.skipped == () and [p.name for p in result.written] == ["state_dict.pt", "program.pt2", "export.json"]
    info = json.loads((out / "export.json").read_text())
    assert info["cell"] == "lstm" and info["tie_weights"] is True and info["files"] == ["program.pt2", "state_dict.pt"]
    lm = _plain_torch_lm(info)
    lm.load_state_dict(torch.load(out / "state_dict.pt", weights_only=True))   # strict
    model = load_trained(run).model
    tokens = torch.randint(0, info["vocab_size"], (9, 3), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(tokens[:5])
        theirs, state = _run_plain(lm, tokens[:5])
        torch.testing.assert_close(theirs, ours.logits)
        torch.testing.assert_close(_run_plain(lm, tokens[5:], state)[0], model(tokens[5:], ours.state).logits)


@pytest.mark.parametrize("batch", [1, 4])
def test_the_program_gives_rnnreg_logits_for_any_batch(exported, batch):
    run, out, _ = exported
    program = torch.export.load(out / "program.pt2").module()
    info = json.loads((out / "export.json").read_text())
    model = load_trained(run).model
    tokens = torch.randint(0, info["vocab_size"], (6, batch), generator=torch.Generator().manual_seed(2))
    state = [tuple(torch.zeros(1, batch, h) for _ in range(2)) for h in info["sizes"]]
    steps = []
    with torch.no_grad():
        for t in range(6):                      # program_steps 1: one token per call, state carried
            logits, state = program(tokens[t:t + 1], state)
            steps.append(logits)
        torch.testing.assert_close(torch.cat(steps), model(tokens).logits)
    assert info["program_steps"] == 1


def test_a_longer_program_window(tied_lm_run, tmp_path):
    result = export_run(tied_lm_run, tmp_path, which="last", steps=4)
    assert result.skipped == ()
    program = torch.export.load(tmp_path / "program.pt2").module()
    model = load_trained(tied_lm_run, which="last").model
    tokens = torch.randint(0, model.vocab_size, (4, 2))
    with torch.no_grad():
        logits, _ = program(tokens, model.init_state(2))
        torch.testing.assert_close(logits, model(tokens).logits)


def _lm(**options) -> nn.Module:
    return RNNLanguageModel(11, embedding_size=4, hidden_size=5, num_layers=2, **options).eval()


@pytest.mark.parametrize("model, reason", [
    (_lm(peepholes=True), "layer 0 has peephole connections"),
    (_lm(cell="rnn", nonlinearity="trec"), "'trec' nonlinearity"),
    (_lm(zoneout_h_p=0.1), "zoneout"),
    (_lm(cell="gru", zoneout_h_p=0.1), "zoneout"),
    (set_mc_dropout(_lm(weight_p=0.3)), "MC dropout"),
    (SurprisalZoneoutLM(11, embedding_size=4, hidden_size=5, num_layers=1).eval(), "surprisal-driven zoneout"),
    (SequenceNet(3, 2, head="last", hidden_sizes=(4,)).eval(), "SequenceNet is not a language model"),
    (_lm(softmax="mos", mos_experts=2), "mixture of softmaxes"),
    (_lm(softmax="adaptive", adaptive_cutoffs=(4,), adaptive_div_value=2.0), "adaptive softmax"),
])
def test_what_is_not_torch_nn_is_refused_with_its_reason(model, reason):
    refusal = torch_nn_refusal(model)
    assert refusal and reason in refusal and "\n" not in refusal


@pytest.mark.parametrize("model", [_lm(), _lm(cell="gru", tie_weights=True, hidden_sizes=(5, 4)), _lm(cell="rnn"),
                                   _lm(cell="irnn"), _lm(weight_p=0.5, embed_p=0.2, input_p=0.3, hidden_p=0.2,
                                                         output_p=0.3, weight_noise_std=0.1, recurrent_dropout=0.2)])
def test_what_is_torch_nn_in_eval_is_accepted(model):
    assert torch_nn_refusal(model) is None


def _untrained_run(tmp_path: Path, *overrides: str):
    # A run directory holding a best.pt of a freshly built model: what export reads, without training.
    config = tiny_config(write_corpus(tmp_path / "corpus"), tmp_path / "runs", *overrides)
    run = new_run_dir(config.train.out_dir, config.name)
    run.write_config(config)
    spec = build_task(config).model_spec()
    save_checkpoint(run.best, {"config": config_to_dict(config), "spec": spec.as_dict(),
                               "model": build_model(config, spec).state_dict(), "step": 0, "scores": {}})
    return run


def test_a_refused_part_is_named_and_the_rest_still_written(tmp_path, capsys):
    run = _untrained_run(tmp_path, "model.peepholes=true", "model.weight_p=0.0")
    assert main(["export", str(run.path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "state_dict.pt not written: layer 0 has peephole connections, which torch.nn.LSTM has not"
    info = json.loads((run.path / "export" / "export.json").read_text())
    assert info["skipped"][0] == out[0] and "state_dict.pt" not in info["files"]
    assert sorted(p.name for p in (run.path / "export").iterdir()) == sorted([*info["files"], "export.json"])
    assert [line for line in out if line.startswith("wrote")] == [f"wrote {run.path / 'export' / name}"
                                                                  for name in (*info["files"], "export.json")]


def test_a_model_with_nothing_to_export_is_one_line_and_writes_nothing(tmp_path, capsys):
    run = trained_adding_run(tmp_path, steps=1)
    capsys.readouterr()
    assert main(["export", str(run.path), "--out", str(tmp_path / "exported")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"rnnreg export: error: nothing to export from {run.path}: ")
    assert "SequenceNet is not a language model" in err
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize("argv, message", [(["--steps", "0"], "--steps must be >= 1, got 0"),
                                           (["--out", "{file}/sub"], "cannot create")])
def test_bad_export_arguments_are_one_line(exported, tmp_path, capsys, argv, message):
    run, _, _ = exported
    (tmp_path / "file").write_text("not a folder")
    argv = [a.replace("{file}", str(tmp_path / "file")) for a in argv]
    assert main(["export", str(run.path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def _readme_examples() -> list[str]:
    """The section's code blocks: the torch.export program, then the torch.nn modules."""
    section = README.read_text(encoding="utf-8").split("#### Weights outside rnnreg", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow  # trains a few steps of the quickstart preset, runs a subprocess
def test_the_readme_example_loads_an_export_without_rnnreg(tmp_path):
    config = load_config("quickstart", [f"train.out_dir={tmp_path / 'runs'}", "model.hidden_size=16",
                                        "model.embedding_size=8", "train.max_steps=2", "data.batch_size=4",
                                        "data.bptt=8", "data.min_bptt=4", "data.bptt_std=1.0",
                                        "train.sample_length=5", "train.threads=1"])
    run = new_run_dir(config.train.out_dir, config.name)
    run.write_config(config)
    train(config, run)
    assert main(["export", str(run.path)]) == 0
    program, modules = _readme_examples()
    trained = load_trained(run)
    vocab = list(trained.spec.vocab)
    for example, text in ((program, "R"), (modules, "ROMEO:")):
        code = ("import sys\nsys.modules['rnnreg'] = None  # importing rnnreg now fails\n" + example
                + "torch.save(logits, 'logits.pt')\n")
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        tokens = torch.tensor([[vocab.index(c)] for c in text])
        with torch.no_grad():
            torch.testing.assert_close(torch.load(tmp_path / "logits.pt", weights_only=True),
                                       trained.model(tokens).logits)
