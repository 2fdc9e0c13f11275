"""Turning a language model's flat arguments into per-layer sizes and layer keyword arguments."""

from __future__ import annotations

from typing import Any, Sequence

# Options only one cell family understands (as rnnreg.layers.base.CELL_OPTIONS), named by the
# model's ``cell`` argument so the error speaks the model's language.
CELL_ONLY = {"peepholes": "lstm", "forget_bias": "lstm", "zoneout_c_p": "lstm",
             "nonlinearity": "rnn", "trec_threshold": "rnn", "recurrent_init": "rnn"}
SHARED = ("weight_p", "recurrent_dropout", "recurrent_dropout_mode", "zoneout_h_p",
          "weight_noise_std", "implementation")
# IRNN (Le et al. 2015) is defined by its ReLU and identity recurrence; nothing else may change them.
IRNN_FIXED = {"nonlinearity": "relu", "recurrent_init": "identity"}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def layer_sizes(vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
                hidden_sizes: Sequence[int] | None, tie_weights: bool) -> list[int]:
    """Each layer's hidden size. With tied weights the decoder reads the last layer through the
    (V, E) embedding matrix, so the last layer must have E units (AWD-LSTM, Merity et al. 2017)."""
    _positive_int("vocab_size", vocab_size)
    _positive_int("embedding_size", embedding_size)
    _positive_int("num_layers", num_layers)
    if hidden_sizes is None:
        sizes = [_positive_int("hidden_size", hidden_size)] * num_layers
        if tie_weights:
            sizes[-1] = embedding_size
        return sizes
    sizes = list(hidden_sizes)
    if len(sizes) != num_layers:
        raise ValueError(f"hidden_sizes must give one size per layer (num_layers={num_layers}), "
                         f"got {len(sizes)}")
    for index, size in enumerate(sizes):
        _positive_int(f"hidden_sizes[{index}]", size)
    if tie_weights and sizes[-1] != embedding_size:
        raise ValueError(f"tie_weights=True needs the last of hidden_sizes to equal embedding_size "
                         f"({embedding_size}), got {sizes[-1]}")
    return sizes


def layer_options(cell: str, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for every layer of a ``cell`` stack, refusing options that do not apply."""
    family = "rnn" if cell == "irnn" else cell
    options = {name: given[name] for name in SHARED}
    for name, owner in CELL_ONLY.items():
        changed = given[name] != defaults[name]
        if owner != family:
            if changed:
                raise TypeError(f"{name} applies to cell='{owner}' only, not to cell={cell!r}")
        elif cell == "irnn" and name in IRNN_FIXED:
            if changed and given[name] != IRNN_FIXED[name]:
                raise ValueError(f"cell='irnn' fixes {name}={IRNN_FIXED[name]!r}; use cell='rnn' "
                                 f"to choose {name}")
            options[name] = IRNN_FIXED[name]
        else:
            options[name] = given[name]
    return options
