"""The one configuration schema: frozen dataclasses, validated when built.

A config is read from a TOML preset (``rnnreg/presets/*.toml``) or a user file, adjusted with
dotted ``section.key=value`` overrides, and stops at the builders (``rnnreg.tasks.build``): modules
never see it, they take flat named arguments. Field names follow the layers' names
(``input_p``, ``weight_p``, ...) so one name means one thing from the TOML file to the kernel.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields

from ..data.registry import DATASET_NAMES
from ..layers.options import CELLS, OPTIONS, SINGLE_CELL_TASKS, STACK_CELLS, refusals
from ..models.adaptive_softmax import last_tail_units
from .kinds import misapplied


PRECISIONS = ("fp32", "bf16", "fp16")    # train.precision (rnnreg.training.precision)


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type, value out of range."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check(obj: object, section: str) -> None:
    """Ranges shared by every section, by naming convention: ``*_p`` are probabilities in
    [0, 1) (a rate of 1 would drop everything), sizes and counts are positive."""
    for f in fields(obj):
        value, name = getattr(obj, f.name), f"{section}.{f.name}"
        if f.name.endswith("_p") or f.name == "recurrent_dropout":
            _require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    _require(value in allowed, f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """Which corpus and how it is cut into training windows (Merity et al. 2017, sec. 4.1)."""
    dataset: str = "tinyshakespeare"   # a registered name, or a folder with train/valid/test text
    path: str | None = None            # local folder holding the named dataset's files
    cache_dir: str | None = None       # where downloads go (default $RNNREG_CACHE or ~/.cache/rnnreg)
    download: bool = True
    batch_size: int = 32
    eval_batch_size: int = 10
    test_batch_size: int = 1           # AWD-LSTM evaluates the test set with batch size 1
    bptt: int = 70
    variable_bptt: bool = True         # base bptt w.p. bptt_p else bptt/2, then N(base, bptt_std)
    bptt_p: float = 0.95
    bptt_std: float = 5.0
    min_bptt: int = 5
    max_bptt_delta: int = 40

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size", "test_batch_size", "bptt", "min_bptt"):
            _require(getattr(self, name) >= 1, f"data.{name} must be >= 1, got {getattr(self, name)}")
        _require(0.0 <= self.bptt_p <= 1.0, f"data.bptt_p must be in [0, 1], got {self.bptt_p}")
        _require(self.bptt_std >= 0.0 and self.max_bptt_delta >= 0,
                 "data.bptt_std and data.max_bptt_delta must be >= 0")
        # data.path says where a named dataset's files are; a folder named as data.dataset is
        # itself the data, so a path beside it would say it twice (which one is read?): refused.
        names = (*DATASET_NAMES, "timit")
        if self.path is not None and self.dataset not in names:
            close = difflib.get_close_matches(self.dataset, names, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"data.path is for a named dataset's files ({', '.join(names)}), but data.dataset = "
                              f"{self.dataset!r} is not one{hint}; a folder of your own is data.dataset=FOLDER "
                              "alone, without data.path")


@dataclass(frozen=True)
class ModelConfig:
    """The language model (Zaremba et al. 2014; Merity et al. 2017); see RNNLanguageModel."""
    cell: str = "lstm"                 # lstm | gru | rnn | irnn; tasks also grud | clockwork
    # Which cell takes which of the recurrent options below: rnnreg.layers.options.
    embedding_size: int = 400
    hidden_size: int = 1150
    num_layers: int = 3
    hidden_sizes: tuple[int, ...] = ()  # per-layer sizes; empty: hidden_size (last = embedding if tied)
    tie_weights: bool = False
    embed_p: float = 0.0               # embedding dropout (AWD --dropoute)
    input_p: float = 0.0               # locked dropout on the embedding output (--dropouti)
    hidden_p: float = 0.0              # locked dropout between layers (--dropouth)
    output_p: float = 0.0              # locked dropout on the last layer's output (--dropout)
    nonrecurrent_p: float = 0.0        # Zaremba et al. 2014: fresh-mask dropout, non-recurrent connections
    weight_p: float = 0.0              # weight drop on W_hh (--wdrop)
    recurrent_dropout: float = 0.0
    recurrent_dropout_mode: str = "gal"
    zoneout_h_p: float = 0.0
    zoneout_c_p: float = 0.0
    weight_noise_std: float = 0.0
    peepholes: bool = False
    forget_bias: float | None = None
    nonlinearity: str = "tanh"
    trec_threshold: float = 1.0
    recurrent_init: str = "default"
    implementation: str = "auto"
    init_range: float = 0.1
    surprisal_zoneout: bool = False    # Rocki 2016: keep probabilities from the last surprisal
    surprisal_temperature: float = 1.0
    bidirectional: bool = False        # sequence tasks: read both ways (CTC tagging)
    clockwork_periods: tuple[int, ...] = ()  # cell = clockwork: one period per module (Koutnik 2014)
    attention: str = "none"            # seq2seq: none | dot (Luong et al. 2015 dot attention)
    softmax: str = "full"              # lm: full | adaptive (Grave et al. 2017) | mos (Yang et al. 2017)
    adaptive_cutoffs: tuple[int, ...] = ()  # adaptive: cluster boundaries in frequency order
    adaptive_div_value: float = 4.0    # adaptive: each tail cluster's projection shrinks by this (tied: 1)
    mos_experts: int = 15              # mos: number of softmaxes mixed (AWD-LSTM-MoS --n_experts)
    mos_latent_p: float = 0.0          # mos: locked dropout on the experts' contexts (--dropoutl)

    def __post_init__(self) -> None:
        _check(self, "model")
        _choice("model.cell", self.cell, CELLS)
        _choice("model.attention", self.attention, ("none", "dot"))
        # The option table: named choices, and options (or values) this cell does not have.
        found = refusals(self.cell, {name: getattr(self, name) for name in OPTIONS}, prefix="model.")
        _require(not found, "; ".join(refusal.message for refusal in found))
        for name in ("embedding_size", "hidden_size", "num_layers"):
            _require(getattr(self, name) >= 1, f"model.{name} must be >= 1, got {getattr(self, name)}")
        _require(not self.hidden_sizes or len(self.hidden_sizes) == self.num_layers,
                 f"model.hidden_sizes has {len(self.hidden_sizes)} entries for {self.num_layers} layers")
        _require(all(s >= 1 for s in self.hidden_sizes), "model.hidden_sizes must be positive")
        _require(self.weight_noise_std >= 0.0, "model.weight_noise_std must be >= 0")
        _require(self.init_range > 0.0 and self.surprisal_temperature > 0.0,
                 "model.init_range and model.surprisal_temperature must be > 0")
        _require(all(p >= 1 for p in self.clockwork_periods), "model.clockwork_periods must be >= 1")
        _require(self.cell != "clockwork" or bool(self.clockwork_periods),
                 "model.cell = 'clockwork' needs model.clockwork_periods, e.g. [1, 2, 4, 8]")
        self._check_softmax()

    def _check_softmax(self) -> None:
        _choice("model.softmax", self.softmax, ("full", "adaptive", "mos"))
        _require(self.softmax != "adaptive" or bool(self.adaptive_cutoffs),
                 "model.softmax = 'adaptive' needs model.adaptive_cutoffs, e.g. [20000, 40000, 200000]")
        cuts = list(self.adaptive_cutoffs)
        _require(cuts == sorted(set(cuts)) and all(c >= 1 for c in cuts),
                 f"model.adaptive_cutoffs must be increasing positive word counts, got {cuts}")
        _require(self.adaptive_div_value >= 1.0, f"model.adaptive_div_value must be >= 1, got {self.adaptive_div_value}")
        _require(not (self.softmax == "adaptive" and self.tie_weights) or self.adaptive_div_value == 1.0,
                 "model.tie_weights with the adaptive softmax needs model.adaptive_div_value = 1 "
                 "(every output vector then has the embedding's size)")
        last = self.hidden_sizes[-1] if self.hidden_sizes else (
            self.embedding_size if self.tie_weights else self.hidden_size)
        units = last_tail_units(last, self.adaptive_div_value, len(self.adaptive_cutoffs))
        _require(self.softmax != "adaptive" or units >= 1,
                 f"model.adaptive_cutoffs: the last tail cluster's projection would have {last} // "
                 f"{self.adaptive_div_value:g}**{len(self.adaptive_cutoffs)} = {units} units; lower "
                 "model.adaptive_div_value or use fewer cutoffs")
        _require(self.softmax == "adaptive" or (not self.adaptive_cutoffs and self.adaptive_div_value == 4.0),
                 "model.adaptive_cutoffs and model.adaptive_div_value are read only with model.softmax = 'adaptive'")
        _require(self.softmax == "mos" or (self.mos_experts == 15 and self.mos_latent_p == 0.0),
                 "model.mos_experts and model.mos_latent_p are read only with model.softmax = 'mos'")
        _require(self.mos_experts >= 1, f"model.mos_experts must be >= 1, got {self.mos_experts}")
        _require(0.0 <= self.mos_latent_p < 1.0, f"model.mos_latent_p must be in [0, 1), got {self.mos_latent_p}")
        _require(self.softmax == "full" or not self.surprisal_zoneout,
                 "model.surprisal_zoneout needs model.softmax = 'full' (its surprisal reads the full logits)")


TASKS = ("lm", "adding", "mnist", "missing", "clockwork", "seq2seq", "ctc")


@dataclass(frozen=True)
class TaskConfig:
    """What the network learns. ``lm`` is language modelling on [data]'s corpus; every other kind
    is a sequence task (rnnreg.tasks) with its own metric; one loop (rnnreg.training.loop) trains
    them all. Which setting applies to which kind: :mod:`.kinds`."""
    kind: str = "lm"                   # lm | adding | mnist | missing | clockwork | seq2seq | ctc
    data_seed: int = 1234              # generated data, permutations, splits (not the model's seed)
    seq_len: int = 100                 # time steps per sequence (adding, clockwork, missing)
    frames_per_label: int = 4          # ctc (generated): mean frames per label (durations 2..6 at 4)
    train_size: int = 0                # examples per training epoch (0: the task's default)
    valid_size: int = 1000             # validation examples (mnist: held out of the training images)
    test_size: int = 1000              # generated tasks' test examples (mnist: always its 10,000)
    permuted: bool = False             # mnist: one fixed random pixel order (pMNIST, Le et al. 2015)
    problem: str = "copy"              # seq2seq: copy | reverse | addition
    min_length: int = 1                # seq2seq / ctc: shortest sequence (addition: digits)
    max_length: int = 10               # seq2seq / ctc: longest sequence (addition: digits)
    num_symbols: int = 10              # seq2seq / ctc: alphabet size (labels, blank not counted)
    num_features: int = 8              # missing (synthetic): variables per time step
    missing_p: float = 0.6             # missing (synthetic): probability a value is not observed
    beam_size: int = 1                 # seq2seq / ctc: beam width at evaluation (1: greedy)

    def __post_init__(self) -> None:
        _check(self, "task")
        _choice("task.kind", self.kind, TASKS)
        _choice("task.problem", self.problem, ("copy", "reverse", "addition"))
        for name in ("seq_len", "frames_per_label", "valid_size", "test_size", "min_length", "max_length", "num_symbols",
                     "num_features", "beam_size"):
            _require(getattr(self, name) >= 1, f"task.{name} must be >= 1, got {getattr(self, name)}")
        _require(self.train_size >= 0, f"task.train_size must be >= 0, got {self.train_size}")
        _require(self.min_length <= self.max_length,
                 f"task.min_length ({self.min_length}) must be <= task.max_length ({self.max_length})")


@dataclass(frozen=True)
class PenaltyConfig:
    """Loss terms added at the training loop's call site (rnnreg.penalties)."""
    ar: float = 0.0                    # alpha: AR on the dropped last-layer output
    tar: float = 0.0                   # beta: TAR on the raw last-layer output
    norm_stabilizer: float = 0.0       # beta of Krueger & Memisevic 2016
    norm_stabilizer_cost: str = "norm"
    norm_stabilizer_on: str = "hidden"  # hidden | cell (LSTM)
    norm_stabilizer_layers: tuple[int, ...] = ()  # empty: every layer
    norm_stabilizer_target: float | None = None
    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        from ..penalties import NORM_STABILIZER_COSTS

        for name in ("ar", "tar", "norm_stabilizer", "l1", "l2"):
            _require(getattr(self, name) >= 0.0, f"penalties.{name} must be >= 0, got {getattr(self, name)}")
        _choice("penalties.norm_stabilizer_cost", self.norm_stabilizer_cost, tuple(NORM_STABILIZER_COSTS))
        _choice("penalties.norm_stabilizer_on", self.norm_stabilizer_on, ("hidden", "cell"))
        _require(self.norm_stabilizer_cost != "target" or self.norm_stabilizer_target is not None,
                 "penalties.norm_stabilizer_cost = 'target' needs penalties.norm_stabilizer_target")


MAX_LR = 1e30                          # optim.lr's bound (OptimConfig says why)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "nt_asgd"         # sgd | adam | rmsprop | asgd | nt_asgd
    lr: float = 30.0
    momentum: float = 0.0
    weight_decay: float = 1.2e-6
    betas: tuple[float, float] = (0.9, 0.999)
    rmsprop_alpha: float = 0.99        # rmsprop: decay of the squared-gradient average
    clip: float = 0.25                 # max gradient norm; 0 turns clipping off
    nonmono: int = 5                   # NT-ASGD's non-monotone interval n
    trigger_rule: str = "code"         # code (awd-lstm-lm) | paper (Merity et al. 2017, Alg. 1)
    schedule: str = "none"             # none | zaremba | plateau | milestones
    decay_factor: float = 0.5
    decay_start_epoch: int = 4
    plateau_patience: int = 0
    milestones: tuple[int, ...] = ()   # milestones: epochs after which lr *= decay_factor (AWD's --when)
    finetune_lr: float = 0.0           # lr of the finetune stage (0: optim.lr); AWD-LSTM-MoS finetunes at another

    def __post_init__(self) -> None:
        _choice("optim.optimizer", self.optimizer, ("sgd", "adam", "rmsprop", "asgd", "nt_asgd"))
        _require(0.0 < self.rmsprop_alpha < 1.0, f"optim.rmsprop_alpha must be in (0, 1), got {self.rmsprop_alpha}")
        _choice("optim.trigger_rule", self.trigger_rule, ("code", "paper"))
        _choice("optim.schedule", self.schedule, ("none", "zaremba", "plateau", "milestones"))
        _require(list(self.milestones) == sorted(set(self.milestones)) and all(m >= 1 for m in self.milestones),
                 f"optim.milestones must be increasing epochs >= 1, got {list(self.milestones)}")
        _require(self.schedule == "milestones" or not self.milestones,
                 "optim.milestones is read only with optim.schedule = 'milestones'")
        _require(self.schedule != "milestones" or bool(self.milestones),
                 "optim.schedule = 'milestones' needs optim.milestones, e.g. [25, 35]")
        _require(self.lr > 0.0, f"optim.lr must be > 0, got {self.lr}")
        _require(0.0 <= self.finetune_lr <= MAX_LR, f"optim.finetune_lr must be in [0, {MAX_LR:g}], got {self.finetune_lr}")
        # The optimizers hand lr (Adam: lr / (1 - beta1), the LM loop: times window / bptt) to
        # float32 kernels, which overflow near 3.4e38; 1e30 leaves room for both.
        _require(math.isfinite(self.lr) and self.lr <= MAX_LR,
                 f"optim.lr must be at most {MAX_LR:g} (a larger step overflows float32), got {self.lr}")
        for name in ("momentum", "weight_decay", "clip", "decay_start_epoch", "plateau_patience"):
            _require(getattr(self, name) >= 0, f"optim.{name} must be >= 0, got {getattr(self, name)}")
        _require(0.0 < self.decay_factor <= 1.0, f"optim.decay_factor must be in (0, 1], got {self.decay_factor}")
        _require(self.nonmono >= 1, f"optim.nonmono must be >= 1, got {self.nonmono}")
        _require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
                 f"optim.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    max_steps: int = 0                 # stop after this many steps (0: no limit)
    max_minutes: float = 0.0           # stop (and evaluate) after this much training time (0: none)
    seed: int = 1111
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    threads: int = 0                   # torch.set_num_threads (0: torch's default)
    precision: str = "fp32"            # fp32 | bf16 | fp16 (autocast; fp16 with loss scaling)
    log_every: int = 50                # steps between metric lines
    eval_every: int = 0                # steps between validations (0: once per epoch)
    checkpoint_every: int = 0          # steps between extra checkpoints (0: at validations)
    patience: int = 0                  # early stopping on validation (0: off)
    nan_policy: str = "recover"        # recover (restore last good state, lower lr) | stop
    nan_lr_factor: float = 0.5
    max_nan_recoveries: int = 3
    divergence_factor: float = 100.0   # a loss above this x the first step's counts as non-finite (0: off)
    mc_samples: int = 0                # also report MC-dropout validation with this many samples
    finetune_epochs: int = 0           # AWD-LSTM's finetune stage (averaging from the start)
    sample_length: int = 300
    sample_temperature: float = 0.8
    sample_prime: str = ""
    tensorboard: bool = False
    out_dir: str = "runs"

    def __post_init__(self) -> None:
        _choice("train.nan_policy", self.nan_policy, ("recover", "stop"))
        _choice("train.precision", self.precision, PRECISIONS)
        _require(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        _require(self.log_every >= 1, f"train.log_every must be >= 1, got {self.log_every}")
        for name in ("max_steps", "max_minutes", "threads", "eval_every", "checkpoint_every", "patience",
                     "max_nan_recoveries", "mc_samples", "finetune_epochs", "sample_length"):
            _require(getattr(self, name) >= 0, f"train.{name} must be >= 0, got {getattr(self, name)}")
        _require(0.0 < self.nan_lr_factor < 1.0, f"train.nan_lr_factor must be in (0, 1), got {self.nan_lr_factor}")
        # At or below 1 an ordinary noisy step would count as diverged.
        _require(self.divergence_factor == 0 or self.divergence_factor > 1,
                 f"train.divergence_factor must be 0 (off) or > 1, got {self.divergence_factor}")
        _require(self.sample_temperature > 0.0, "train.sample_temperature must be > 0")
        _require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                 f"train.device must be auto, cpu, cuda or cuda:N; got {self.device!r}")


@dataclass(frozen=True)
class EvaluationConfig:
    """Evaluation-time methods a language model's run applies to its best weights at the end
    (``valid_cache`` / ``test_cache``, ``valid_dynamic`` / ``test_dynamic`` in summary.json);
    ``rnnreg eval --cache / --dynamic`` read their defaults here. Both read one stream of text
    (batch size 1), as the papers."""
    # Continuous cache pointer (Grave et al. 2016); theta and lambda: AWD-LSTM's PTB values (Merity
    # et al. 2017 sec. 7, window 2000; awd-lstm-lm's README runs PTB with window 500).
    cache_window: int = 0              # positions in the cache (0: off)
    cache_theta: float = 1.0           # sharpness of the attention over the cache
    cache_lambda: float = 0.1          # weight of the cache in the mixture
    # Dynamic evaluation (Krause et al. 2017): the defaults of the authors' dynamiceval.py
    # (benkrause/dynamic-evaluation), RMS-normalised steps with decay towards the trained weights.
    dynamic: bool = False
    dynamic_lr: float = 5e-5           # eta
    dynamic_decay: float = 2e-3        # lambda: decay towards the trained weights
    dynamic_epsilon: float = 2e-5      # added to RMS(g) in the update's denominator
    dynamic_bptt: int = 5              # tokens per segment: score, then update
    dynamic_batch_size: int = 100      # columns of training text for the gradient statistics MS_g
    dynamic_max_batches: int = 0       # training batches for MS_g (0: the whole training split)

    def __post_init__(self) -> None:
        _require(self.cache_window >= 0, f"evaluation.cache_window must be >= 0 (0: off), got {self.cache_window}")
        _require(math.isfinite(self.cache_theta) and self.cache_theta >= 0.0,
                 f"evaluation.cache_theta must be >= 0, got {self.cache_theta}")
        _require(0.0 <= self.cache_lambda <= 1.0, f"evaluation.cache_lambda must be in [0, 1], got {self.cache_lambda}")
        for name in ("dynamic_lr", "dynamic_epsilon"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value > 0.0, f"evaluation.{name} must be > 0, got {value}")
        _require(math.isfinite(self.dynamic_decay) and self.dynamic_decay >= 0.0,
                 f"evaluation.dynamic_decay must be >= 0, got {self.dynamic_decay}")
        for name in ("dynamic_bptt", "dynamic_batch_size"):
            _require(getattr(self, name) >= 1, f"evaluation.{name} must be >= 1, got {getattr(self, name)}")
        _require(self.dynamic_max_batches >= 0,
                 f"evaluation.dynamic_max_batches must be >= 0 (0: all), got {self.dynamic_max_batches}")


METHODS = ("plain", "cache", "dynamic", "mc")   # how a number was evaluated (Reference.method)


@dataclass(frozen=True)
class Reference:
    """A published number this preset should reproduce; ``method``: the evaluation it comes
    from (plain; cache: continuous cache pointer; dynamic: dynamic evaluation; mc: MC dropout),
    so that the report sets it beside our number of the same kind. ``needs``: what the paper's
    setup has that rnnreg lacks (empty: nothing), so that the report never sets a difference."""
    source: str
    valid: float | None = None
    test: float | None = None
    method: str = "plain"
    needs: str = ""

    def __post_init__(self) -> None:
        _choice("expect.references.method", self.method, METHODS)
        if not isinstance(self.needs, str):
            raise ConfigError(f"expect.references.needs must be a string, got {self.needs!r}")


@dataclass(frozen=True)
class ExpectConfig:
    metric: str = "auto"               # ppl | bpc | auto (LM: from the dataset's level; tasks: theirs)
    references: tuple[Reference, ...] = ()

    def __post_init__(self) -> None:
        _choice("expect.metric", self.metric, ("auto", "ppl", "bpc"))


@dataclass(frozen=True)
class Config:
    name: str = "custom"
    description: str = ""
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    penalties: PenaltyConfig = field(default_factory=PenaltyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    expect: ExpectConfig = field(default_factory=ExpectConfig)

    def __post_init__(self) -> None:
        _require(bool(self.name) and "/" not in self.name, f"name must be a non-empty word, got {self.name!r}")
        _require(self.optim.finetune_lr == 0.0 or self.train.finetune_epochs > 0,
                 "optim.finetune_lr is read only with train.finetune_epochs > 0 (the finetune stage)")
        if self.model.tie_weights and self.model.hidden_sizes and self.model.softmax != "mos":
            _require(self.model.hidden_sizes[-1] == self.model.embedding_size,
                     "model.tie_weights needs the last of model.hidden_sizes to equal model.embedding_size")
        _require(not (self.penalties.norm_stabilizer_on == "cell" and self.model.cell != "lstm"),
                 "penalties.norm_stabilizer_on = 'cell' needs model.cell = 'lstm'")
        cells = STACK_CELLS + tuple(c for c, kind in SINGLE_CELL_TASKS.items() if kind == self.task.kind)
        _require(self.model.cell in cells, f"model.cell = {self.model.cell!r} does not fit task.kind = "
                 f"{self.task.kind!r} (use one of {', '.join(cells)})")
        _require(self.task.kind in ("adding", "mnist", "ctc") or not self.model.bidirectional,
                 f"model.bidirectional needs a task that reads whole sequences before answering "
                 f"(adding, mnist, ctc), not {self.task.kind!r}")
        _require(self.model.attention == "none" or self.task.kind == "seq2seq",
                 "model.attention applies to task.kind = 'seq2seq' only")
        if self.model.cell in SINGLE_CELL_TASKS:
            # GRU-D and the Clockwork RNN are one recurrent layer of their own with a read-out; the
            # options they do not have are refused by ModelConfig, from the option table.
            unsupported = {"model.num_layers": self.model.num_layers != 1,
                           "model.hidden_sizes": bool(self.model.hidden_sizes)}
            used = [name for name, on in unsupported.items() if on]
            _require(not used, f"model.cell = {self.model.cell!r} is one layer without {', '.join(used)}; "
                     f"remove {'it' if len(used) == 1 else 'them'}")
        _require(self.task.kind != "ctc" or self.data.dataset in ("timit", DataConfig.dataset),
                 f"task.kind = 'ctc' trains on TIMIT (data.dataset = 'timit', with data.path) or on "
                 f"generated sequences (leave data.dataset unset), not on {self.data.dataset!r}")
        _require(not (self.task.kind == "ctc" and self.data.path and self.data.dataset != "timit"),
                 "data.path for task.kind = 'ctc' names the TIMIT folder: set data.dataset = 'timit' "
                 "too (without it the task is the generated one, and the path would be ignored)")
        # Everything else a kind does not read must stay at its default: refused, not ignored.
        ignored = misapplied(self)
        _require(not ignored, f"{', '.join(ignored)} do{'es' if len(ignored) == 1 else ''} not apply to "
                 f"task.kind = {self.task.kind!r}; remove {'it' if len(ignored) == 1 else 'them'}")
        bad = [i for i in self.penalties.norm_stabilizer_layers if not 0 <= i < self.model.num_layers]
        _require(not bad, f"penalties.norm_stabilizer_layers {bad} out of range for {self.model.num_layers} layers")
