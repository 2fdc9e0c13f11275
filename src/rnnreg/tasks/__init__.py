"""Tasks: what a network learns, with its data and metric (see ``base.Task``).

Language modelling (word and character level) and the sequence tasks the papers evaluate on:
adding (Hochreiter & Schmidhuber 1997), pixel MNIST and pMNIST, missing-value series for GRU-D
(Che et al. 2018), signal generation for the Clockwork RNN (Koutnik et al. 2014), seq2seq
(copy / reverse / addition) and CTC sequence labelling (Graves et al. 2006).
"""

from .base import Batch, ModelSpec, Task
from .language_model import LanguageModelTask
from .sequence_task import SequenceTask

__all__ = ["Batch", "LanguageModelTask", "ModelSpec", "SequenceTask", "Task"]
