"""Log mel filterbank features with torch: the usual input of RNN phone recognisers.

Frames of 25 ms every 10 ms, a Hamming window after pre-emphasis (0.97), the power spectrum of a
512-point FFT (the window zero-padded), triangular filters equally spaced on the mel scale (HTK's mel(f) = 2595 log10(1 +
f / 700)), the log of each band's energy; optionally the log frame energy as one more feature,
and first and second time derivatives by HTK's regression formula. Graves, Mohamed & Hinton
(2013) feed TIMIT networks 40 mel bands plus energy with both derivatives (123 features); these
are our defaults, computed with our own choices for the details (pre-emphasis, window, floor).
"""

from __future__ import annotations

import torch
from torch import Tensor

LOG_FLOOR = 1e-10  # keeps log() finite in digital silence


def hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> Tensor:
    """(n_fft // 2 + 1, num_mels) triangular filters; filter m rises from edge m to edge m + 1
    and falls to edge m + 2 of num_mels + 2 edges equally spaced in mel between f_min and f_max."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if num_mels < 1 or not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need num_mels >= 1 and 0 <= f_min < f_max <= {sample_rate / 2}, "
                         f"got {num_mels}, {f_min}, {f_max}")
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(f_min))),
                                     float(hz_to_mel(torch.tensor(f_max))), num_mels + 2))
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)[:, None]  # (K, 1)
    lower, centre, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]  # (1, M) each
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)  # (K, M)


def add_deltas(features: Tensor, order: int, window: int = 2) -> Tensor:
    """(T, F) -> (T, F (order + 1)): features, then derivatives of successive orders by
    d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2), n = 1..window, edges repeated (HTK)."""
    if order < 0 or window < 1:
        raise ValueError(f"need order >= 0 and window >= 1, got {order}, {window}")
    blocks, current = [features], features
    steps = features.shape[0]
    weights = torch.arange(1, window + 1, dtype=features.dtype)
    for _ in range(order):
        padded = torch.cat([current[:1].expand(window, -1), current, current[-1:].expand(window, -1)])
        ahead = torch.stack([padded[window + n: window + n + steps] for n in range(1, window + 1)])
        behind = torch.stack([padded[window - n: window - n + steps] for n in range(1, window + 1)])
        current = torch.einsum("n,ntf->tf", weights, ahead - behind) / (2 * float(weights.pow(2).sum()))
        blocks.append(current)
    return torch.cat(blocks, dim=1)


def log_mel_features(samples: Tensor, sample_rate: int = 16000, *, num_mels: int = 40,
                     window_ms: float = 25.0, hop_ms: float = 10.0, n_fft: int = 512,
                     energy: bool = True, deltas: int = 2) -> Tensor:
    """Samples (N,) -> features (T, (num_mels + energy) (deltas + 1)), T = 1 + (N - W) // H
    frames (W, H: window and hop in samples; no padding, so frame t covers samples tH..tH + W)."""
    if samples.dim() != 1:
        raise ValueError(f"samples must be one-dimensional (N,), got shape {tuple(samples.shape)}")
    width, hop = round(sample_rate * window_ms / 1000), round(sample_rate * hop_ms / 1000)
    if n_fft < width:
        raise ValueError(f"n_fft ({n_fft}) must be >= the window ({width} samples)")
    if samples.shape[0] < width:
        raise ValueError(f"need at least one window of {width} samples, got {samples.shape[0]}")
    x = samples.float()
    x = torch.cat([x[:1], x[1:] - 0.97 * x[:-1]])  # pre-emphasis
    # Framing by hand rather than torch.stft: stft centres a shorter window inside each n_fft
    # frame, which shifts every frame by (n_fft - W) / 2 samples and loses the last frames.
    frames = x.unfold(0, width, hop) * torch.hamming_window(width, periodic=False)  # (T, W)
    power = torch.fft.rfft(frames, n=n_fft).abs().pow(2)  # (T, n_fft // 2 + 1)
    bands = torch.log(torch.clamp(power @ mel_filterbank(num_mels, n_fft, sample_rate), min=LOG_FLOOR))
    if energy:
        bands = torch.cat([bands, torch.log(torch.clamp(power.sum(1, keepdim=True), min=LOG_FLOOR))], dim=1)
    return add_deltas(bands, deltas)


def feature_size(num_mels: int = 40, energy: bool = True, deltas: int = 2) -> int:
    """The width of :func:`log_mel_features`' output."""
    return (num_mels + int(energy)) * (deltas + 1)

