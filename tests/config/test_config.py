"""The config schema: strict TOML loading, overrides, inheritance, and every shipped preset."""

import dataclasses
import tomllib

import pytest

from rnnreg.tasks.base import ModelSpec
from rnnreg.tasks.build import build_model
from rnnreg.config import (Config, ConfigError, apply_overrides, config_from_dict, config_to_dict, dump_config,
                           load_config, preset_names)

PAPER_PRESETS = {"zaremba-small", "zaremba-medium", "zaremba-large", "awd-lstm-ptb", "awd-lstm-ptb-finetune",
                 "awd-lstm-wt2", "awd-lstm-wt2-finetune", "zoneout-word-ptb", "zoneout-char-ptb",
                 "zoneout-char-ptb-baseline",
                 "norm-stabilizer-char-ptb", "awd-lstm-ptb-cache", "awd-lstm-wt2-cache", "awd-lstm-mos-ptb",
                 "awd-lstm-mos-ptb-finetune", "awd-lstm-mos-wt2", "awd-lstm-mos-wt2-finetune", "awd-lstm-enwik8",
                 "awd-lstm-char-ptb", "awd-lstm-ptb-dynamic", "awd-lstm-wt2-dynamic", "awd-lstm-mos-ptb-dynamic",
                 "awd-lstm-mos-wt2-dynamic"}


def test_every_paper_row_has_a_preset():
    assert PAPER_PRESETS | {"quickstart"} <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_round_trips_and_builds(name):
    config = load_config(name)
    assert config.name == name and config.description
    again = config_from_dict(tomllib.loads(dump_config(config)))
    assert again == config
    # Build at a reduced size (the real ones reach 66M parameters) with every other setting kept.
    # Task presets are built and trained through the CLI in test_cli_tasks.py.
    if config.task.kind == "lm":
        small = dataclasses.replace(config.model, embedding_size=8, hidden_size=8,
                                    hidden_sizes=tuple(8 for _ in config.model.hidden_sizes),
                                    adaptive_cutoffs=(4, 8) if config.model.adaptive_cutoffs else ())
        model = build_model(dataclasses.replace(config, model=small), ModelSpec(11, 11, "lm"))
        assert sum(p.numel() for p in model.parameters()) > 0
    if name in PAPER_PRESETS:
        assert config.expect.references, f"{name} stores no published numbers"
        for ref in config.expect.references:
            assert ref.source and (ref.valid is not None or ref.test is not None)


def test_preset_numbers_match_the_papers():
    refs = {n: [(r.valid, r.test) for r in load_config(n).expect.references] for n in PAPER_PRESETS}
    assert refs["zaremba-small"] == [(120.7, 114.5)]
    assert refs["zoneout-char-ptb"] == [(1.362, 1.27)] and refs["zoneout-char-ptb-baseline"] == [(1.466, 1.356)]
    assert refs["zaremba-medium"] == [(86.2, 82.7)]
    assert refs["zaremba-large"] == [(82.2, 78.4)]
    assert refs["awd-lstm-ptb"] == [(61.2, 58.8)]
    assert (60.0, 57.3) in refs["awd-lstm-ptb-finetune"] and (58.8, 56.5) in refs["awd-lstm-ptb-finetune"]
    assert refs["awd-lstm-wt2"] == [(68.7, 65.6)]
    assert refs["awd-lstm-wt2-finetune"] == [(68.6, 65.8)]
    assert refs["awd-lstm-ptb-cache"] == [(53.9, 52.8), (60.0, 57.3)]
    assert refs["awd-lstm-wt2-cache"] == [(53.8, 52.0), (68.6, 65.8)]
    assert refs["awd-lstm-mos-ptb"] == [(58.08, 55.97)] and refs["awd-lstm-mos-ptb-finetune"] == [(56.54, 54.44)]
    assert refs["awd-lstm-mos-wt2"] == [(66.01, 63.33)] and refs["awd-lstm-mos-wt2-finetune"] == [(63.88, 61.45)]
    assert refs["awd-lstm-enwik8"] == [(None, 1.232)] and refs["awd-lstm-char-ptb"] == [(None, 1.175)]
    assert [r.method for r in load_config("awd-lstm-ptb-cache").expect.references] == ["cache", "plain"]
    assert refs["awd-lstm-ptb-dynamic"] == [(51.6, 51.1), (60.0, 57.3)]
    assert refs["awd-lstm-wt2-dynamic"] == [(46.4, 44.3), (68.6, 65.8)]
    assert refs["awd-lstm-mos-ptb-dynamic"] == [(48.33, 47.69), (56.54, 54.44)]
    assert refs["awd-lstm-mos-wt2-dynamic"] == [(42.41, 40.68), (63.88, 61.45)]
    for name in ("awd-lstm-ptb-dynamic", "awd-lstm-wt2-dynamic", "awd-lstm-mos-ptb-dynamic", "awd-lstm-mos-wt2-dynamic"):
        config = load_config(name)
        assert config.evaluation.dynamic and [r.method for r in config.expect.references] == ["dynamic", "plain"]


def test_mos_preset_is_the_papers_model():
    c = load_config("awd-lstm-mos-ptb")
    m = c.model
    assert (m.embedding_size, m.hidden_sizes, m.softmax, m.mos_experts, m.mos_latent_p) == \
        (280, (960, 960, 620), "mos", 15, 0.29)
    model = build_model(c, ModelSpec(10000, 10000, "lm"))
    assert model.mos.decoder.weight is model.encoder.weight
    # Yang et al. 2017, Table 1: 22M parameters
    assert abs(sum(p.numel() for p in model.parameters()) - 22_000_000) < 600_000


def test_awd_preset_is_the_papers_model():
    c = load_config("awd-lstm-ptb")
    m = c.model
    assert (m.embedding_size, m.hidden_size, m.num_layers, m.tie_weights) == (400, 1150, 3, True)
    assert (m.embed_p, m.input_p, m.hidden_p, m.output_p, m.weight_p) == (0.1, 0.4, 0.25, 0.4, 0.5)
    assert (c.penalties.ar, c.penalties.tar, c.optim.optimizer, c.optim.lr) == (2.0, 1.0, "nt_asgd", 30.0)
    model = build_model(c, ModelSpec(10000, 10000, "lm"))
    assert model.decoder.weight is model.encoder.weight
    assert abs(sum(p.numel() for p in model.parameters()) - 24_221_600) < 100_000   # AWD: 24M


def test_inheritance_keeps_the_base_and_replaces_what_is_given():
    medium, small = load_config("zaremba-medium"), load_config("zaremba-small")
    assert medium.data.dataset == small.data.dataset == "ptb"
    assert medium.model.nonrecurrent_p == 0.5 and small.model.nonrecurrent_p == 0.0
    assert medium.optim.schedule == "zaremba"


def test_overrides_are_typed_and_dotted():
    c = load_config("quickstart", ["model.hidden_size=17", "optim.lr=1e-3", "data.dataset=ptb",
                                   "model.hidden_sizes=[5, 6]", "model.forget_bias=1"])
    assert c.model.hidden_size == 17 and c.optim.lr == 1e-3 and isinstance(c.optim.lr, float)
    assert c.data.dataset == "ptb" and c.model.hidden_sizes == (5, 6) and c.model.forget_bias == 1.0


@pytest.mark.parametrize("override, message", [
    ("model.hiden_size=3", "did you mean 'model.hidden_size'"),
    ("modle.hidden_size=3", "did you mean 'model'"),
    ("model.hidden_size=3.5", "model.hidden_size must be int"),
    ("model.hidden_size=0", "model.hidden_size must be >= 1"),
    ("model.output_p=1.0", "model.output_p must be in [0, 1)"),
    ("optim.optimizer=adamw", "optim.optimizer must be one of"),
    ("model.tie_weights=yes", "model.tie_weights must be bool"),
    ("model.hidden_sizes=[4]", "model.hidden_sizes has 1 entries for 2 layers"),
    ("penalties.norm_stabilizer_layers=[7]", "out of range"),
    ("train.nan_policy=ignore", "train.nan_policy must be one of"),
    ("oops", "must look like section.key=value"),
    ("model.softmax=hierarchical", "model.softmax must be one of"),
    ("model.softmax=adaptive", "needs model.adaptive_cutoffs"),
    ("model.adaptive_cutoffs=[5, 3]", "increasing positive"),
    ("model.mos_latent_p=1.0", "model.mos_latent_p must be in [0, 1)"),
    ("optim.milestones=[3]", "only with optim.schedule = 'milestones'"),
    ("optim.schedule=milestones", "needs optim.milestones"),
    ("optim.finetune_lr=5.0", "read only with train.finetune_epochs > 0"),
    ("model.mos_experts=3", "read only with model.softmax = 'mos'"),
    ("model.adaptive_cutoffs=[3]", "read only with model.softmax = 'adaptive'"),
])
def test_bad_values_are_refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config("quickstart", [override])


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'awd-lstm-ptb'"):
        load_config("awd-lstm-pt")


def test_user_toml_file_with_base(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "awd-lstm-ptb"\n[model]\nhidden_size = 600\n[optim]\nweight_decay = 1e-6\n')
    c = load_config(str(path))
    assert c.name == "mine" and c.model.hidden_size == 600 and c.optim.weight_decay == 1e-6
    assert c.model.weight_p == 0.5
    (tmp_path / "broken.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(tmp_path / "broken.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"))


def test_yaml_trap_scientific_notation_is_a_float():
    # PyYAML reads 1e-6 as a string; TOML reads it as a float and the schema keeps it one.
    c = config_from_dict({"optim": {"weight_decay": 1e-6}})
    assert c.optim.weight_decay == 1e-6


def test_schema_is_frozen_and_dict_round_trip():
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.model.hidden_size = 3
    assert config_from_dict(config_to_dict(c)) == c


def test_old_model_dropout_key_is_refused_in_files_and_overrides(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('base = "zaremba-small"\n[model]\ndropout = 0.5\n')
    for call in (lambda: load_config(str(path)), lambda: load_config("zaremba-small", ["model.dropout=0.5"]),
                 lambda: apply_overrides({}, ["model.dropout=0.5"])):
        with pytest.raises(ConfigError, match=r"^model\.dropout is now model\.nonrecurrent_p \(Zaremba") as err:
            call()
        assert "\n" not in str(err.value)


def test_stored_run_config_with_model_dropout_still_loads(caplog):
    stored = {"name": "old-run", "model": {"dropout": 0.5, "hidden_size": 16}}
    with caplog.at_level("WARNING", logger="rnnreg.config.loading"):
        config = config_from_dict(stored)
    assert config.model.nonrecurrent_p == 0.5 and config.model.hidden_size == 16
    assert "model.dropout is now model.nonrecurrent_p" in caplog.text
    assert stored == {"name": "old-run", "model": {"dropout": 0.5, "hidden_size": 16}}  # not modified
    with pytest.raises(ConfigError, match="one setting"):
        config_from_dict({"model": {"dropout": 0.5, "nonrecurrent_p": 0.2}})


@pytest.mark.parametrize("cell", ["irnn", "tanh", "trec"])
def test_norm_stabilizer_rows_are_pairs_differing_in_beta_alone(cell):
    """Krueger & Memisevic 2016 compare beta 0 and 500 per cell: each row is two presets whose
    configs differ in penalties.norm_stabilizer only (the report's scaled pair relies on it)."""
    from rnnreg.runs.provenance import config_diff

    on, off = load_config(f"norm-stabilizer-char-ptb-{cell}"), load_config(f"norm-stabilizer-char-ptb-{cell}-beta0")
    assert on.penalties.norm_stabilizer == 500.0 and off.penalties.norm_stabilizer == 0.0
    assert set(config_diff(dataclasses.replace(off, name=on.name, description=on.description), on)) == \
        {"penalties.norm_stabilizer"}
    assert on.model.cell == ("irnn" if cell == "irnn" else "rnn")
    assert cell == "irnn" or on.model.nonlinearity == cell
    assert on.data.dataset == "ptb-char" and on.model.zoneout_c_p == on.model.zoneout_h_p == 0.0


def test_the_zoneout_char_ptb_baseline_differs_from_zoneout_char_ptb_in_zoneout_alone():
    from rnnreg.runs.provenance import config_diff

    zoneout, baseline = load_config("zoneout-char-ptb"), load_config("zoneout-char-ptb-baseline")
    same_name = dataclasses.replace(baseline, name=zoneout.name, description=zoneout.description,
                                    expect=zoneout.expect)
    assert set(config_diff(same_name, zoneout)) == {"model.zoneout_c_p", "model.zoneout_h_p"}
