"""A generated sequence-labelling problem for CTC: noisy label segments of unknown duration.

Every label k in 1..K has a fixed random prototype vector p_k in F dimensions (N(0, 1) entries;
"silence" is the zero vector p_0). An example is a random label sequence of min_length..max_length
labels; each label is held for a random number of frames, uniform in
[max(1, n // 2), n + n // 2] for n = ``frames_per_label`` (2..6 for n = 4, mean n), and silence
gaps of 0..n // 2 frames sit before, between and after the labels. Every frame is its prototype
plus N(0, noise_std^2) noise. Two equal neighbouring labels always get at least one silence frame
between them, as otherwise "a a" would be one long "a" that no model could split.

The network sees only the frames, never the segment boundaries, so it has to learn the alignment:
the situation CTC was made for (Graves et al. 2006), like phones in speech. With noise_std = 0 the
frames map back to their classes exactly and the CTC collapse of that class sequence (silence as
the blank) is the label sequence, which the tests check.
"""

from __future__ import annotations

import torch
from torch import Tensor


def label_prototypes(num_symbols: int, num_features: int, generator: torch.Generator) -> Tensor:
    """(K + 1, F) prototypes: row 0 the silence (zeros), rows 1..K standard normal vectors."""
    if num_symbols < 1 or num_features < 1:
        raise ValueError(f"num_symbols and num_features must be >= 1, got {num_symbols}, {num_features}")
    labels = torch.randn(num_symbols, num_features, generator=generator)
    return torch.cat([torch.zeros(1, num_features), labels])  # (K + 1, F)


def duration_range(frames_per_label: int) -> tuple[int, int]:
    """Inclusive (shortest, longest) frames one label is held for."""
    if frames_per_label < 1:
        raise ValueError(f"frames_per_label must be >= 1, got {frames_per_label}")
    return max(1, frames_per_label // 2), frames_per_label + frames_per_label // 2


def frame_classes(labels: Tensor, frames_per_label: int, generator: torch.Generator) -> Tensor:
    """The class of every frame (0 silence, else the label) for one label sequence (L,)."""
    shortest, longest = duration_range(frames_per_label)
    count = labels.shape[0]
    durations = torch.randint(shortest, longest + 1, (count,), generator=generator)
    gaps = torch.randint(0, frames_per_label // 2 + 1, (count + 1,), generator=generator)
    repeats = torch.zeros(count + 1, dtype=torch.bool)
    repeats[1:-1] = labels[1:] == labels[:-1]
    gaps = torch.where(repeats, gaps.clamp(min=1), gaps)  # gap i sits before label i
    pieces = []
    for i in range(count):
        pieces += [torch.zeros(int(gaps[i]), dtype=torch.long), labels[i].repeat(int(durations[i]))]
    pieces.append(torch.zeros(int(gaps[-1]), dtype=torch.long))
    return torch.cat(pieces)


def ctc_example(prototypes: Tensor, generator: torch.Generator, *, min_length: int, max_length: int,
                frames_per_label: int, noise_std: float) -> tuple[Tensor, Tensor]:
    """One example: features (T, F) float32 and labels (L,) int64 in 1..K."""
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    num_symbols, width = prototypes.shape[0] - 1, prototypes.shape[1]
    length = int(torch.randint(min_length, max_length + 1, (1,), generator=generator))
    labels = torch.randint(1, num_symbols + 1, (length,), generator=generator)
    classes = frame_classes(labels, frames_per_label, generator)
    noise = torch.randn(classes.shape[0], width, generator=generator)  # (T, F)
    return prototypes[classes] + noise_std * noise, labels
