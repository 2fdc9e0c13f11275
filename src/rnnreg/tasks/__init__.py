"""Sequence tasks beyond language modelling, each with its data and metric (see ``base.Task``).

adding (Hochreiter & Schmidhuber 1997), pixel MNIST and pMNIST, missing-value series for GRU-D
(Che et al. 2018), signal generation for the Clockwork RNN (Koutnik et al. 2014), seq2seq
(copy / reverse / addition) and CTC sequence labelling (Graves et al. 2006).
"""

from .base import Batch, SequenceOutput, Task

__all__ = ["Batch", "SequenceOutput", "Task"]
