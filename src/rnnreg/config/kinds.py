"""Which settings apply to which task kind: the one table the schema checks and the dump reads.

A setting not named here applies to every kind. A setting that does not apply to a run's kind
must stay at its default (a value there would be silently ignored, so it is refused), and is
left out when the config is written (``rnnreg presets show``, a run's ``config.toml``), so that
a language model's config shows no seq2seq settings and an adding-problem config no BPTT.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from ..layers.options import OPTIONS

LM, SEQ2SEQ = ("lm",), ("seq2seq",)

KINDS: dict[str, tuple[str, ...]] = {
    # [task]: the sequence tasks' own settings (a language model's data is [data]'s corpus)
    "task.data_seed": ("adding", "mnist", "missing", "clockwork", "seq2seq", "ctc"),
    "task.seq_len": ("adding", "clockwork", "missing"),
    "task.frames_per_label": ("ctc",),
    "task.train_size": ("adding", "mnist", "missing", "clockwork", "seq2seq", "ctc"),
    "task.valid_size": ("adding", "mnist", "missing", "seq2seq", "ctc"),
    "task.test_size": ("adding", "missing", "seq2seq", "ctc"),
    "task.permuted": ("mnist",),
    "task.problem": SEQ2SEQ,
    "task.min_length": ("seq2seq", "ctc"),
    "task.max_length": ("seq2seq", "ctc"),
    "task.num_symbols": ("seq2seq", "ctc"),
    "task.num_features": ("missing", "ctc"),
    "task.missing_p": ("missing",),
    "task.beam_size": ("seq2seq", "ctc"),
    # [data]: where the data comes from, and a language model's BPTT windows
    "data.dataset": ("lm", "ctc"),
    "data.path": ("lm", "mnist", "missing", "ctc"),
    "data.cache_dir": ("lm", "mnist"),
    "data.download": ("lm", "mnist"),
    "data.test_batch_size": LM,
    "data.bptt": LM, "data.variable_bptt": LM, "data.bptt_p": LM, "data.bptt_std": LM,
    "data.min_bptt": LM, "data.max_bptt_delta": LM,
    # [model]: token embeddings, a language model's output, one architecture's own settings
    "model.embedding_size": ("lm", "seq2seq"),
    "model.embed_p": ("lm", "seq2seq"),
    "model.init_range": ("lm", "seq2seq"),
    "model.tie_weights": LM,
    "model.surprisal_zoneout": LM,
    "model.surprisal_temperature": LM,
    "model.softmax": LM,
    "model.adaptive_cutoffs": LM,
    "model.adaptive_div_value": LM,
    "model.mos_experts": LM,
    "model.mos_latent_p": LM,
    "model.bidirectional": ("adding", "mnist", "ctc"),
    "model.attention": SEQ2SEQ,
    "model.clockwork_periods": ("clockwork",),
    # [train]: a language model's end of run; [expect]: its metric (tasks have their own)
    "train.mc_samples": LM,
    "train.sample_length": LM,
    "train.sample_temperature": LM,
    "train.sample_prime": LM,
    "expect.metric": LM,
    # [evaluation]: a language model's evaluation-time methods (cache pointer, dynamic evaluation)
    **{f"evaluation.{name}": LM for name in (
        "cache_window", "cache_theta", "cache_lambda", "dynamic", "dynamic_lr", "dynamic_decay",
        "dynamic_epsilon", "dynamic_bptt", "dynamic_batch_size", "dynamic_max_batches")},
}


def applies(key: str, kind: str) -> bool:
    """Whether the setting ``section.name`` means anything for task ``kind``."""
    return kind in KINDS.get(key, (kind,))


def shown(key: str, config: Any) -> bool:
    """Whether a written config shows ``section.name``: it applies to the run's kind and, for a
    recurrent option, to its cell (the option table, :mod:`rnnreg.layers.options`)."""
    section, name = key.split(".")
    if section == "model" and name in OPTIONS and config.model.cell not in OPTIONS[name].cells:
        return False
    return applies(key, config.task.kind)


def misapplied(config: Any) -> list[str]:
    """The settings of ``config`` (a Config) changed from their defaults that its kind ignores."""
    kind = config.task.kind
    found = []
    for key, kinds in KINDS.items():
        section, name = key.split(".")
        if kind in kinds:
            continue
        part = getattr(config, section)
        if getattr(part, name) != _default(type(part), name):
            found.append(key)
    return found


def _default(cls: type, name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default if f.default is not MISSING else f.default_factory()
