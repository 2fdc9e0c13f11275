"""The builder: where the config stops. Every task and model takes flat named arguments.

The task is built first, with its data; the model is then sized to the task's
:class:`~rnnreg.tasks.base.ModelSpec` (which checkpoints also store, so a trained run rebuilds its
model from the config and the spec without reading its data again).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..config import Config, ModelConfig, TaskConfig
from ..data import Corpus, load_dataset
from ..layers.options import OPTION_NAMES
from .base import ModelSpec, Task

# ModelConfig fields every recurrent stack takes as they are: its sizes and the option table's
# options (the rest are one model's own: the language model's embedding and tying, seq2seq's
# attention, clockwork_periods, ...).
_LAYER_FIELDS = ("cell", "hidden_size", "num_layers", *OPTION_NAMES)


def build_task(config: Config, corpus: Corpus | None = None) -> Task:
    """The task ``config.task.kind`` names, with its data (generated, read or downloaded).
    ``corpus``: a language model's corpus when the caller has it loaded already."""
    t, d = config.task, config.data
    if t.kind == "lm":
        from .language_model import LanguageModelTask
        corpus = corpus if corpus is not None else load_dataset(d.dataset, path=d.path, cache_dir=d.cache_dir,
                                                                download=d.download)
        tr = config.train
        return LanguageModelTask(corpus, metric=lm_metric(config, corpus), bptt=d.bptt,
                                 variable_bptt=d.variable_bptt, bptt_p=d.bptt_p, bptt_std=d.bptt_std,
                                 min_bptt=d.min_bptt, max_bptt_delta=d.max_bptt_delta, seed=tr.seed,
                                 sample_length=tr.sample_length, sample_temperature=tr.sample_temperature,
                                 sample_prime=tr.sample_prime, mc_samples=tr.mc_samples,
                                 frequency_order=config.model.softmax == "adaptive",
                                 **dataclasses.asdict(config.evaluation))  # cache_window=..., dynamic=...
    if t.kind == "adding":
        from .adding import AddingTask
        return AddingTask(seq_len=t.seq_len, valid_size=t.valid_size, **_train_size(t),
                          test_size=t.test_size, data_seed=t.data_seed)
    if t.kind == "mnist":
        from .mnist import PixelMNISTTask
        return PixelMNISTTask.from_source(path=d.path, cache_dir=d.cache_dir, download=d.download,
                                          permuted=t.permuted, data_seed=t.data_seed, valid_size=t.valid_size,
                                          train_size=t.train_size)
    if t.kind == "missing":
        from .missing import MissingValuesTask
        # GRU-D reads the mask and intervals; any other model the mean-imputed values (GRU-Mean).
        inputs = "grud" if config.model.cell == "grud" else "imputed"
        return MissingValuesTask.from_config_values(path=d.path, seq_len=t.seq_len, num_features=t.num_features,
                                                    missing_p=t.missing_p, train_size=t.train_size,
                                                    valid_size=t.valid_size, test_size=t.test_size,
                                                    data_seed=t.data_seed, inputs=inputs)
    if t.kind == "clockwork":
        from .signal_generation import SignalGenerationTask
        return SignalGenerationTask(seq_len=t.seq_len, data_seed=t.data_seed, **_train_size(t))
    if t.kind == "seq2seq":
        from .seq2seq import Seq2SeqTask
        return Seq2SeqTask(t.problem, min_length=t.min_length, max_length=t.max_length,
                           num_symbols=t.num_symbols, train_size=t.train_size,
                           valid_size=t.valid_size, test_size=t.test_size, data_seed=t.data_seed,
                           beam_size=t.beam_size)
    if t.kind == "ctc" and d.dataset == "timit":
        from .timit import TimitTask
        return TimitTask(d.path, train_size=t.train_size, valid_size=t.valid_size, test_size=t.test_size,
                         data_seed=t.data_seed, beam_size=t.beam_size)
    if t.kind == "ctc":
        from .ctc import CTCTask
        return CTCTask(num_symbols=t.num_symbols, num_features=t.num_features, min_length=t.min_length,
                       max_length=t.max_length, frames_per_label=t.frames_per_label, **_train_size(t),
                       valid_size=t.valid_size, test_size=t.test_size, data_seed=t.data_seed,
                       beam_size=t.beam_size)
    raise ValueError(f"task.kind {t.kind!r} has no builder")


def build_model(config: Config, spec: ModelSpec) -> nn.Module:
    """The model for a task's ``spec``: a language model, an encoder-decoder for seq2seq, GRU-D
    or a Clockwork RNN where the config's cell says so, else a stack of rnnreg layers with a
    read-out (SequenceNet)."""
    m = config.model
    layer = {name: getattr(m, name) for name in _LAYER_FIELDS}
    cells, sizes = needs_cells(config), tuple(m.hidden_sizes) or None
    if spec.head == "lm":
        from ..models import RNNLanguageModel, SurprisalZoneoutLM
        lm = dict(layer, embedding_size=m.embedding_size, hidden_sizes=sizes, tie_weights=m.tie_weights,
                  embed_p=m.embed_p, init_range=m.init_range, return_cells=cells, softmax=m.softmax)
        if m.softmax == "adaptive":
            lm.update(adaptive_cutoffs=m.adaptive_cutoffs, adaptive_div_value=m.adaptive_div_value,
                      frequency_order=spec.frequency_order)
        if m.softmax == "mos":
            lm.update(mos_experts=m.mos_experts, mos_latent_p=m.mos_latent_p)
        if m.surprisal_zoneout:
            return SurprisalZoneoutLM(spec.output_size, temperature=m.surprisal_temperature, **lm)
        return RNNLanguageModel(spec.output_size, **lm)
    if spec.head == "seq2seq":
        from ..models.seq2seq import Seq2Seq
        return Seq2Seq(spec.input_size, spec.output_size, embedding_size=m.embedding_size, embed_p=m.embed_p,
                       hidden_sizes=sizes, attention=m.attention, init_range=m.init_range, return_cells=cells,
                       **layer)
    if m.cell == "grud":
        from ..models.grud_net import GRUDNet
        return GRUDNet(spec.input_size, spec.output_size, x_mean=_tensor(spec.x_mean), hidden_size=m.hidden_size,
                       recurrent_dropout=m.recurrent_dropout, recurrent_dropout_mode=m.recurrent_dropout_mode,
                       zoneout_h_p=m.zoneout_h_p, output_p=m.output_p, implementation=_single_cell(m))
    if m.cell == "clockwork":
        from ..models.clockwork_net import ClockworkNet
        return ClockworkNet(spec.input_size, spec.output_size, hidden_size=m.hidden_size,
                            clockwork_periods=m.clockwork_periods, nonlinearity=m.nonlinearity,
                            trec_threshold=m.trec_threshold, input_p=m.input_p,
                            recurrent_dropout=m.recurrent_dropout, zoneout_h_p=m.zoneout_h_p, output_p=m.output_p,
                            implementation=_single_cell(m))
    from ..models.sequence_net import SequenceNet
    return SequenceNet(spec.input_size, spec.output_size, head=spec.head, bidirectional=m.bidirectional,
                       hidden_sizes=sizes, return_cells=cells, **layer)


def model_refusal(config: Config, spec: ModelSpec) -> str | None:
    """Why the config's model cannot be built for this data, in one line (None when it can): what
    the schema cannot know without the data, such as an adaptive softmax's cutoffs against the
    vocabulary."""
    m = config.model
    if spec.head == "lm" and m.softmax == "adaptive" and m.adaptive_cutoffs[-1] >= spec.output_size:
        return (f"model.adaptive_cutoffs {list(m.adaptive_cutoffs)} must stay below the vocabulary size "
                f"({spec.output_size:,} words in {spec.dataset or config.data.dataset})")
    return None


def needs_cells(config: Config) -> bool:
    """Whether the model must return its LSTM cell sequences (the norm-stabilizer on cells)."""
    return config.penalties.norm_stabilizer > 0 and config.penalties.norm_stabilizer_on == "cell"


def lm_metric(config: Config, corpus: Corpus) -> str:
    """bpc for character-level corpora, ppl for word-level, unless the preset says otherwise.
    PTB-char is written as space-separated symbols (word-style tokens) but scored in bpc."""
    if config.expect.metric != "auto":
        return config.expect.metric
    return "bpc" if corpus.level == "char" or corpus.name == "ptb-char" else "ppl"


def _single_cell(model: ModelConfig) -> str:
    """GRU-D's and the Clockwork RNN's implementations: their one fast path, or the reference
    twin (the config refuses "fused", which they do not have)."""
    return "reference" if model.implementation == "reference" else "fast"


def _tensor(values):
    import torch

    return None if values is None else torch.tensor(values, dtype=torch.float32)


def _train_size(task: TaskConfig) -> dict:
    """``task.train_size`` when set; 0 leaves the task's own default (one number, in one place)."""
    return {"train_size": task.train_size} if task.train_size else {}

