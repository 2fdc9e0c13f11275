"""The generated CTC sequence-labelling task (see :mod:`rnnreg.tasks.ctc_synthetic` for the data).

Data streams, all from ``data_seed`` (the convention of :mod:`rnnreg.tasks.adding`): the label
prototypes from ``batch_generator(seed, -2, 0)``; training example ``i`` from its own generator
``batch_generator(seed, -1, i)``, so the fixed training set of ``train_size`` examples does not
depend on the batch size; each epoch's order from ``batch_generator(seed, epoch, -1)``; the
validation and test sets from their split generators. Batch ``index`` of an epoch is thus a pure
function of the seed and its arguments (exact resume).
"""

from __future__ import annotations

from functools import lru_cache


from .base import Batch, check_positive
from .sequence_task import batch_generator, EpochOrder, split_generator
from .ctc_base import CTCLabellingTask, Example, pad_ctc_batch
from .ctc_synthetic import ctc_example, label_prototypes


class CTCTask(CTCLabellingTask):
    """Label ``num_symbols`` noisy segmented symbols from ``num_features``-dim frames with CTC.

    min_length / max_length: labels per sequence; frames_per_label: mean frames a label lasts
    (config ``task.seq_len``); noise_std: frame noise; train_size: examples in the fixed training
    set; valid_size / test_size: the fixed evaluation sets; beam_size: 1 greedy, else prefix beam.
    Outputs: num_symbols + 1 classes, the blank at index 0. Metric: LER in percent.
    """
    name = "ctc"

    def __init__(self, *, num_symbols: int = 10, num_features: int = 8, min_length: int = 1,
                 max_length: int = 10, frames_per_label: int = 4, noise_std: float = 0.75,
                 train_size: int = 10_000, valid_size: int = 1000, test_size: int = 1000,
                 data_seed: int = 1234, beam_size: int = 1) -> None:
        super().__init__(beam_size)
        for name, value in (("num_symbols", num_symbols), ("num_features", num_features),
                            ("min_length", min_length), ("max_length", max_length),
                            ("frames_per_label", frames_per_label), ("train_size", train_size),
                            ("valid_size", valid_size), ("test_size", test_size)):
            check_positive(name, value)
        if min_length > max_length:
            raise ValueError(f"min_length ({min_length}) must be <= max_length ({max_length})")
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or noise_std < 0:
            raise ValueError(f"noise_std must be a number >= 0, got {noise_std!r}")
        if isinstance(data_seed, bool) or not isinstance(data_seed, int):
            raise TypeError(f"data_seed must be an int, got {data_seed!r}")
        self.input_size, self.output_size = num_features, num_symbols + 1
        self.num_symbols, self.data_seed = num_symbols, data_seed
        self.options = dict(min_length=min_length, max_length=max_length,
                            frames_per_label=frames_per_label, noise_std=float(noise_std))
        self.train_size = train_size
        self.sizes = {"valid": valid_size, "test": test_size}
        self.prototypes = label_prototypes(num_symbols, num_features, batch_generator(data_seed, -2, 0))
        self._eval: dict[str, list[Example]] = {}
        self._example = lru_cache(maxsize=train_size)(self._make_train_example)
        self._order = EpochOrder(train_size, data_seed)

    def num_train_batches(self, batch_size: int) -> int:
        return self._order.num_batches(batch_size)

    def train_batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        chosen = self._order.indices(epoch, index, batch_size)
        return pad_ctc_batch([self._example(int(i)) for i in chosen])

    def eval_examples(self, split: str) -> list[Example]:
        if split not in self._eval:
            generator = split_generator(self.data_seed, split)
            self._eval[split] = [ctc_example(self.prototypes, generator, **self.options)
                                 for _ in range(self.sizes[split])]
        return self._eval[split]

    def describe(self) -> str:
        o = self.options
        return (f"CTC labelling, {self.num_symbols} symbols, {o['min_length']}-{o['max_length']} labels "
                f"of ~{o['frames_per_label']} frames, noise {o['noise_std']}, {self.train_size} training sequences")

    def _make_train_example(self, i: int) -> Example:
        return ctc_example(self.prototypes, batch_generator(self.data_seed, -1, i), **self.options)
