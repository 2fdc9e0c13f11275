"""The one table of recurrent options: which cell accepts which option, and with which values.

The layers (:mod:`.base`), the stack (:mod:`.stack`) and the models built on it, the config schema
and the command line all read this table, so an option means one thing everywhere and a cell that
does not have an option refuses it instead of ignoring it.

Cells: ``lstm``, ``gru`` and ``rnn`` are rnnreg.LSTM / GRU / RNN; ``irnn`` is an RNN with ReLU and
identity recurrence (Le et al. 2015), its two defining values fixed; ``grud`` (Che et al. 2018)
and ``clockwork`` (Koutnik et al. 2014) are single layers of their own with a read-out
(:mod:`rnnreg.models.grud_net`, :mod:`rnnreg.models.clockwork_net`), with no fused torch.nn path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

STACK_CELLS = ("lstm", "gru", "rnn", "irnn")
SINGLE_CELLS = ("grud", "clockwork")
CELLS = STACK_CELLS + SINGLE_CELLS
# The task whose data each single-layer cell is built for: GRU-D reads the missing-values triple
# (x, mask, delta) (Che et al. 2018); the Clockwork net is the sequence-generation model of
# Koutnik et al. (2014), sec. 4.1.
SINGLE_CELL_TASKS = {"grud": "missing", "clockwork": "clockwork"}
# IRNN is defined by its ReLU and identity recurrence (Le et al. 2015); nothing may change them.
FIXED = {"irnn": {"nonlinearity": "relu", "recurrent_init": "identity"}}
_GATED = ("lstm", "gru", "grud")


@dataclass(frozen=True)
class Option:
    """One option: its default, the cells that accept a non-default value, and where it acts.

    connection: True when it acts on the stack's non-recurrent connections (input, between
        layers, output), False when it acts inside each layer.
    rate: a regularizer strength, on when > 0 (it then draws random numbers).
    choices: the values it may take, when it is a named choice.
    narrower: (value, cells, why) for a value that only some of ``cells`` accept.
    stepwise: values that need the stepwise kernel on a stack cell (no fused torch.nn kernel).
    """
    name: str
    default: Any
    cells: tuple[str, ...]
    connection: bool = False
    rate: bool = False
    choices: tuple[str, ...] = ()
    narrower: tuple[tuple[Any, tuple[str, ...], str], ...] = ()
    stepwise: tuple[Any, ...] = ()


OPTIONS: dict[str, Option] = {option.name: option for option in (
    # Locked dropout, one mask per sequence (Gal & Ghahramani 2016; AWD-LSTM's dropouti, dropouth,
    # dropout). A single-layer cell has no connection between layers.
    Option("input_p", 0.0, (*STACK_CELLS, "clockwork"), connection=True, rate=True),
    Option("hidden_p", 0.0, STACK_CELLS, connection=True, rate=True),
    Option("output_p", 0.0, CELLS, connection=True, rate=True),
    # Zaremba et al. 2014: dropout on every non-recurrent connection, fresh mask each step.
    Option("nonrecurrent_p", 0.0, STACK_CELLS, connection=True, rate=True),
    # Weight drop on W_hh (Wan et al. 2013; Merity et al. 2017) and weight noise (Graves 2011).
    Option("weight_p", 0.0, STACK_CELLS, rate=True),
    Option("weight_noise_std", 0.0, STACK_CELLS, rate=True),
    # Recurrent dropout on h_{t-1} (Gal & Ghahramani 2016) or on the candidate update
    # (Semeniuta et al. 2016), which only a gated cell has.
    Option("recurrent_dropout", 0.0, CELLS, rate=True),
    Option("recurrent_dropout_mode", "gal", (*STACK_CELLS, "grud"), choices=("gal", "semeniuta"),
           narrower=(("semeniuta", _GATED, "it drops a gated cell's candidate update, which a plain "
                      "RNN does not have (use 'gal')"),)),
    # Zoneout (Krueger et al. 2016): on h for every cell, on c for the LSTM.
    Option("zoneout_h_p", 0.0, CELLS, rate=True),
    Option("zoneout_c_p", 0.0, ("lstm",), rate=True),
    # LSTM variants: peepholes (Gers & Schmidhuber 2000), forget-gate bias (Jozefowicz et al. 2015).
    Option("peepholes", False, ("lstm",), stepwise=(True,)),
    Option("forget_bias", None, ("lstm",)),
    # Elman RNN variants: ReLU, TRec (Konda et al. 2015), identity init (Le et al. 2015).
    Option("nonlinearity", "tanh", ("rnn", "irnn", "clockwork"), choices=("tanh", "relu", "trec"),
           stepwise=("trec",)),
    Option("trec_threshold", 1.0, ("rnn", "clockwork")),
    Option("recurrent_init", "default", ("rnn", "irnn"), choices=("default", "identity")),
    Option("implementation", "auto", CELLS, choices=("auto", "fused", "stepwise", "reference"),
           narrower=(("fused", STACK_CELLS, "GRU-D and the Clockwork RNN have no torch.nn kernel "
                      "to fuse into (use 'auto' or 'stepwise' for their fast path, or 'reference')"),),
           stepwise=("stepwise",)),
)}
OPTION_NAMES = tuple(OPTIONS)


class Refusal(NamedTuple):
    """Why a cell refuses an option: TypeError for an option it does not have, ValueError for a
    value it does not take."""
    error: type[Exception]
    message: str


def _model_label(cell: str) -> str:
    return f"cell={cell!r}"


def refusals(cell: str, values: Mapping[str, Any], *, among: tuple[str, ...] = CELLS,
             label: Callable[[str], str] = _model_label, prefix: str = "") -> list[Refusal]:
    """Every option in ``values`` (name -> value; names outside the table are skipped) that
    ``cell`` refuses. ``among`` limits the cells named in the messages (those the caller can
    build), ``label`` spells a cell, ``prefix`` goes before option names (``"model."``)."""
    found = []
    for name, value in values.items():
        option = OPTIONS.get(name)
        if option is None:
            continue
        if option.choices and value not in option.choices:
            found.append(Refusal(ValueError, f"{prefix}{name} must be one of "
                                 f"{', '.join(map(repr, option.choices))}, got {value!r}"))
            continue
        if cell not in option.cells:
            if value != option.default:
                owners = " / ".join(label(c) for c in option.cells if c in among)
                found.append(Refusal(TypeError, f"{prefix}{name} applies to {owners} only, "
                                     f"not to {label(cell)}"))
            continue
        fixed = FIXED.get(cell, {}).get(name)
        if fixed is not None and value not in (option.default, fixed):
            free = next(c for c in option.cells if name not in FIXED.get(c, {}))
            found.append(Refusal(ValueError, f"{label(cell)} fixes {prefix}{name}={fixed!r}; use "
                                 f"{label(free)} to choose {prefix}{name}"))
        for narrow, cells, why in option.narrower:
            if value == narrow and cell not in cells:
                owners = " / ".join(label(c) for c in cells if c in among)
                found.append(Refusal(ValueError, f"{prefix}{name}={narrow!r} applies to {owners} only, "
                                     f"not to {label(cell)}: {why}"))
    return found


# Each cell's paths: "fused" runs torch.nn's kernels, "stepwise" our per-step kernel (the fast
# path of GRU-D and the Clockwork RNN), "reference" the plain-autograd twin, "auto" picks.
IMPLEMENTATIONS = {cell: tuple(v for v in OPTIONS["implementation"].choices
                               if not refusals(cell, {"implementation": v})) for cell in CELLS}


def cell_options(cell: str, values: Mapping[str, Any], **spelling: Any) -> dict[str, Any]:
    """``values`` checked for ``cell`` (the first refusal is raised, see :func:`refusals`), with
    the options ``cell`` does not have left out and IRNN's fixed values filled in: the keyword
    arguments for one of its layers."""
    found = refusals(cell, values, **spelling)
    if found:
        raise found[0].error(found[0].message)
    kept = {name: value for name, value in values.items()
            if name in OPTIONS and cell in OPTIONS[name].cells}
    return kept | FIXED.get(cell, {})


def uses_extension(settings: Mapping[str, Any]) -> bool:
    """Whether a model with these settings (ModelConfig field -> value; absent: default) draws
    masks or runs stepwise on the CPU, i.e. loads the C++ extension (rnnreg.kernels.fast).

    Any regularizer rate of the table, embedding dropout (``embed_p``) and surprisal-driven
    zoneout (Rocki 2016: sampled keep masks, run step by step) draw masks; on a stack cell, the
    values the fused kernels cannot run (peepholes, TRec, ``implementation="stepwise"``) run
    stepwise. GRU-D and the Clockwork RNN have their own path and need it only for masks.
    """
    def value(name: str) -> Any:
        return settings.get(name, OPTIONS[name].default if name in OPTIONS else None)

    rates = [value(name) for name, option in OPTIONS.items() if option.rate]
    stepwise = settings.get("cell", "lstm") in STACK_CELLS and any(
        value(name) in option.stepwise for name, option in OPTIONS.items() if option.stepwise)
    return any(rates) or bool(value("embed_p")) or bool(value("surprisal_zoneout")) or stepwise
