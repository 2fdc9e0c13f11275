"""The option table: every cell/option pair, written out here by hand, is accepted or refused with
the right error in the table, the layers, the models and the config; the table matches what the
single-layer nets take; and the C++-extension question is answered from it."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import rnnreg
from rnnreg.cli.common import uses_extension as cli_uses_extension
from rnnreg.config import Config, ConfigError, ModelConfig, TaskConfig
from rnnreg.layers import options
from rnnreg.layers.stack import RecurrentStack
from rnnreg.models import RNNLanguageModel
from rnnreg.models.clockwork_net import ClockworkNet
from rnnreg.models.grud_net import GRUDNet
from rnnreg.models.seq2seq import Seq2Seq
from rnnreg.models.sequence_net import SequenceNet

STACK = {"lstm", "gru", "rnn", "irnn"}
ALL = STACK | {"grud", "clockwork"}
# (option, a non-default value, cells that have the option, cells that take this value): a cell
# without the option refuses it with a TypeError, a cell with it but not this value a ValueError.
CASES = [
    ("input_p", 0.1, STACK | {"clockwork"}, STACK | {"clockwork"}),
    ("hidden_p", 0.1, STACK, STACK),
    ("output_p", 0.1, ALL, ALL),
    ("nonrecurrent_p", 0.1, STACK, STACK),
    ("weight_p", 0.1, STACK, STACK),
    ("weight_noise_std", 0.01, STACK, STACK),
    ("recurrent_dropout", 0.1, ALL, ALL),
    ("recurrent_dropout_mode", "semeniuta", STACK | {"grud"}, {"lstm", "gru", "grud"}),
    ("zoneout_h_p", 0.1, ALL, ALL),
    ("zoneout_c_p", 0.1, {"lstm"}, {"lstm"}),
    ("peepholes", True, {"lstm"}, {"lstm"}),
    ("forget_bias", 1.0, {"lstm"}, {"lstm"}),
    ("nonlinearity", "relu", {"rnn", "irnn", "clockwork"}, {"rnn", "irnn", "clockwork"}),
    ("nonlinearity", "trec", {"rnn", "irnn", "clockwork"}, {"rnn", "clockwork"}),
    ("trec_threshold", 0.5, {"rnn", "clockwork"}, {"rnn", "clockwork"}),
    ("recurrent_init", "identity", {"rnn", "irnn"}, {"rnn", "irnn"}),
    ("implementation", "fused", ALL, STACK),
    ("implementation", "stepwise", ALL, ALL),
    ("implementation", "reference", ALL, ALL),
]
PAIRS = [(cell, name, value, has, takes) for name, value, has, takes in CASES for cell in sorted(ALL)]
IDS = [f"{cell}-{name}={value}" for cell, name, value, *_ in PAIRS]


def expected_error(cell: str, has: set, takes: set):
    return None if cell in takes else (ValueError if cell in has else TypeError)


def test_the_table_is_the_one_written_here():
    assert set(options.OPTIONS) == {name for name, *_ in CASES}
    assert set(options.CELLS) == ALL and set(options.STACK_CELLS) == STACK
    single = ("auto", "stepwise", "reference")
    assert options.IMPLEMENTATIONS["grud"] == options.IMPLEMENTATIONS["clockwork"] == single
    assert options.IMPLEMENTATIONS["lstm"] == ("auto", "fused", "stepwise", "reference")
    for name, value, has, takes in CASES:
        assert set(options.OPTIONS[name].cells) == has, name


@pytest.mark.parametrize("cell, name, value, has, takes", PAIRS, ids=IDS)
def test_table_and_models_accept_or_refuse(cell, name, value, has, takes):
    error = expected_error(cell, has, takes)
    found = options.refusals(cell, {name: value})
    assert [r.error for r in found] == ([] if error is None else [error])
    if cell not in STACK:
        return
    builders = [lambda kw: RNNLanguageModel(7, embedding_size=4, hidden_size=5, num_layers=2, **kw),
                lambda kw: SequenceNet(3, 2, hidden_size=5, num_layers=2, **kw),
                lambda kw: Seq2Seq(6, 7, embedding_size=4, hidden_size=5, num_layers=2, **kw),
                lambda kw: RecurrentStack(kw.pop("cell"), 3, [5, 4], **kw)]
    for build in builders:
        if error is None:
            build({"cell": cell, name: value})
        else:
            with pytest.raises(error, match=name):
                build({"cell": cell, name: value})


LAYER_PAIRS = [(p, i) for p, i in zip(PAIRS, IDS) if p[0] in ("lstm", "gru", "rnn")]


@pytest.mark.parametrize("cell, name, value, has, takes", [p for p, _ in LAYER_PAIRS], ids=[i for _, i in LAYER_PAIRS])
def test_layers_accept_or_refuse(cell, name, value, has, takes):
    layer = {"lstm": rnnreg.LSTM, "gru": rnnreg.GRU, "rnn": rnnreg.RNN}[cell]
    if name == "nonrecurrent_p":
        # A layer keeps torch.nn's ``dropout`` (between its own layers); the option is a stack's.
        assert name not in inspect.signature(rnnreg.layers.base.RecurrentBase.__init__).parameters
        return
    error = expected_error(cell, has, takes)
    if error is None:
        layer(3, 4, 2, **{name: value})
    else:
        with pytest.raises(error, match=name):
            layer(3, 4, 2, **{name: value})


def model_config(cell: str, **kw) -> ModelConfig:
    periods = {"clockwork_periods": (1, 2)} if cell == "clockwork" else {}
    return ModelConfig(cell=cell, num_layers=1, **periods, **kw)


@pytest.mark.parametrize("cell, name, value, has, takes", PAIRS, ids=IDS)
def test_config_accepts_or_refuses(cell, name, value, has, takes):
    if cell in takes:
        model = model_config(cell, **{name: value})
        kind = {"grud": "missing", "clockwork": "clockwork"}.get(cell, "adding")
        Config(task=TaskConfig(kind=kind), model=model)
    else:
        with pytest.raises(ConfigError, match=f"model.{name}"):
            model_config(cell, **{name: value})


def test_fused_is_refused_for_single_layer_cells_with_the_reason():
    with pytest.raises(ConfigError, match="fused.*GRU-D and the Clockwork RNN have no torch.nn kernel"):
        model_config("grud", implementation="fused")


def test_irnn_fixes_its_two_values():
    fixed = {"nonlinearity": "relu", "recurrent_init": "identity"}
    assert options.cell_options("irnn", {"nonlinearity": "tanh"}) == fixed
    with pytest.raises(ValueError, match="cell='irnn' fixes nonlinearity='relu'"):
        options.cell_options("irnn", {"nonlinearity": "trec"})
    layer = RNNLanguageModel(7, embedding_size=4, hidden_size=5, num_layers=1, cell="irnn").layers[0]
    assert (layer.nonlinearity, layer.recurrent_init) == ("relu", "identity")


def test_all_refusals_are_listed_in_one_config_error():
    with pytest.raises(ConfigError, match="model.hidden_p.*; model.peepholes"):
        model_config("grud", hidden_p=0.1, peepholes=True)


@pytest.mark.parametrize("net, cell", [(GRUDNet, "grud"), (ClockworkNet, "clockwork")])
def test_single_layer_nets_take_exactly_their_table_options(net, cell):
    params = set(inspect.signature(net.__init__).parameters)
    for name, option in options.OPTIONS.items():
        assert (name in params) == (cell in option.cells), name


@pytest.mark.parametrize("settings, expected", [
    ({}, False), ({"embed_p": 0.1}, True), ({"nonrecurrent_p": 0.1}, True), ({"output_p": 0.1}, True),
    ({"zoneout_c_p": 0.1}, True), ({"weight_noise_std": 0.01}, True), ({"surprisal_zoneout": True}, True),
    ({"peepholes": True}, True), ({"cell": "rnn", "nonlinearity": "trec"}, True),
    ({"implementation": "stepwise"}, True), ({"implementation": "reference"}, False),
    ({"cell": "clockwork", "nonlinearity": "trec", "implementation": "stepwise"}, False),
    ({"cell": "grud", "recurrent_dropout": 0.1}, True),
])
def test_uses_extension(settings, expected):
    assert options.uses_extension(settings) is expected
    values = dict(settings)
    if values.get("cell") == "clockwork":
        values["clockwork_periods"] = (1, 2)
    assert cli_uses_extension(dataclasses.replace(ModelConfig(num_layers=1), **values)) is expected
