"""Builders for sequence tasks: where the config stops. Each task and model takes flat arguments.

The task is built first: it knows its data (sizes, vocabularies, empirical means), and the model
is then sized to it (``task.input_size`` -> ``task.output_size``, with ``task.head``).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..config import Config, ModelConfig, TaskConfig
from .base import Task

# ModelConfig fields the sequence models take as they are (the rest are language-model only,
# or the architecture's own, such as clockwork_periods).
_LAYER_FIELDS = ("cell", "hidden_size", "num_layers", "input_p", "hidden_p", "output_p", "dropout",
                 "weight_p", "recurrent_dropout", "recurrent_dropout_mode", "zoneout_h_p", "zoneout_c_p",
                 "weight_noise_std", "peepholes", "forget_bias", "nonlinearity", "trec_threshold",
                 "recurrent_init", "implementation")


def build_task(config: Config) -> Task:
    """The task named by ``config.task.kind`` with its data (generated, read or downloaded)."""
    t, d = config.task, config.data
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
        return MissingValuesTask.from_config_values(path=d.path, seq_len=t.seq_len, num_features=t.num_features,
                                                    missing_p=t.missing_p, train_size=t.train_size,
                                                    valid_size=t.valid_size, test_size=t.test_size,
                                                    data_seed=t.data_seed)
    if t.kind == "clockwork":
        from .signal_generation import SignalGenerationTask
        return SignalGenerationTask(seq_len=t.seq_len, data_seed=t.data_seed, **_train_size(t))
    if t.kind == "seq2seq":
        from .seq2seq import Seq2SeqTask
        return Seq2SeqTask(t.problem, min_length=t.min_length, max_length=t.max_length,
                           num_symbols=t.num_symbols, train_size=t.train_size,
                           valid_size=t.valid_size, test_size=t.test_size, data_seed=t.data_seed,
                           beam_size=t.beam_size)
    if t.kind == "ctc":
        if d.dataset == "timit" or d.path:
            from .timit import TimitTask
            return TimitTask(d.path, train_size=t.train_size, valid_size=t.valid_size, test_size=t.test_size,
                             data_seed=t.data_seed, beam_size=t.beam_size)
        from .ctc import CTCTask
        return CTCTask(num_symbols=t.num_symbols, num_features=t.num_features, min_length=t.min_length,
                       max_length=t.max_length, frames_per_label=t.seq_len, **_train_size(t),
                       valid_size=t.valid_size, test_size=t.test_size, data_seed=t.data_seed,
                       beam_size=t.beam_size)
    raise ValueError(f"task.kind {t.kind!r} is not a sequence task")


def build_task_model(config: Config, task: Task) -> nn.Module:
    """The model for ``task``: an encoder-decoder for seq2seq, GRU-D or a Clockwork RNN where the
    config's cell says so, else a stack of rnnreg layers with a read-out (SequenceNet)."""
    m = config.model
    layer = _fields(m, _LAYER_FIELDS)
    cells = config.penalties.norm_stabilizer > 0 and config.penalties.norm_stabilizer_on == "cell"
    if task.head == "seq2seq":
        from ..models.seq2seq import Seq2Seq
        return Seq2Seq(task.input_size, task.output_size, embedding_size=m.embedding_size, embed_p=m.embed_p,
                       hidden_sizes=tuple(m.hidden_sizes) or None, attention=m.attention,
                       init_range=m.init_range, return_cells=cells, **layer)
    if m.cell == "grud":
        from ..models.grud_net import GRUDNet
        return GRUDNet(task.input_size, task.output_size, x_mean=task.x_mean, hidden_size=m.hidden_size,
                       recurrent_dropout=m.recurrent_dropout, recurrent_dropout_mode=m.recurrent_dropout_mode,
                       zoneout_h_p=m.zoneout_h_p, output_p=m.output_p,
                       implementation="reference" if m.implementation == "reference" else "fast")
    if m.cell == "clockwork":
        from ..models.clockwork_net import ClockworkNet
        return ClockworkNet(task.input_size, task.output_size, hidden_size=m.hidden_size,
                            clockwork_periods=m.clockwork_periods, nonlinearity=m.nonlinearity,
                            trec_threshold=m.trec_threshold, input_p=m.input_p,
                            recurrent_dropout=m.recurrent_dropout, zoneout_h_p=m.zoneout_h_p, output_p=m.output_p,
                            implementation="reference" if m.implementation == "reference" else "fast")
    from ..models.sequence_net import SequenceNet
    hidden_sizes = tuple(m.hidden_sizes) or None
    return SequenceNet(task.input_size, task.output_size, head=task.head, bidirectional=m.bidirectional,
                       hidden_sizes=hidden_sizes, return_cells=cells, **layer)


def _train_size(task: TaskConfig) -> dict:
    """``task.train_size`` when set; 0 leaves the task's own default (one number, in one place)."""
    return {"train_size": task.train_size} if task.train_size else {}


def _fields(model: ModelConfig, names: tuple[str, ...]) -> dict:
    values = dataclasses.asdict(model)
    return {name: values[name] for name in names}
