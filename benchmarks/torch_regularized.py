"""bench_layers.py's regularized configurations written in plain PyTorch, as a user without rnnreg
would.

bench_layers.py compares each rnnreg stack with a plain torch.nn stack (``ratio``); for the
configurations whose regularizers run beside the recurrence (weight drop, locked dropout, AR/TAR,
weight noise; on the fused path, and AWD-LSTM's set on the stepwise one too) it also times this
twin, which does the same extra work the usual way:
torch.nn.LSTM modules, one per layer so that dropout can sit between them, AWD-LSTM's weight drop
(Merity et al. 2017: a dropped copy of W_hh passed in for the call, here with
``torch.func.functional_call``) and locked dropout (one ``bernoulli_`` mask per sequence batch,
shared by every step), AR and TAR as tensor expressions, and weight noise from ``torch.randn``.
``ratio_same_work`` is rnnreg's throughput over this twin's: what the regularizers cost beyond what
they cost anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call


def locked(x: Tensor, p: float) -> Tensor:
    """Locked (variational) dropout on (T, B, H): one (1, B, H) mask for every step."""
    if p == 0.0:
        return x
    mask = x.new_empty(1, x.shape[1], x.shape[2]).bernoulli_(1.0 - p) / (1.0 - p)
    return x * mask


class TorchRegularizedLSTM(nn.Module):
    """``layers`` single-layer torch.nn.LSTMs with weight drop, weight noise and locked dropout.

    Dropouts follow rnnreg's stack: ``input_p`` on the input, ``hidden_p`` between layers,
    ``output_p`` on the output. forward returns (output, raw last-layer output), both (T, B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, layers: int, weight_p: float = 0.0,
                 noise_std: float = 0.0, input_p: float = 0.0, hidden_p: float = 0.0,
                 output_p: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.LSTM(input_size if k == 0 else hidden_size, hidden_size)
                                    for k in range(layers))
        self.weight_p, self.noise_std = weight_p, noise_std
        self.input_p, self.hidden_p, self.output_p = input_p, hidden_p, output_p

    def _weights(self, layer: nn.LSTM) -> dict[str, Tensor]:
        """This call's replacement weights (none when neither weight regularizer is on)."""
        out = {}
        if self.noise_std > 0.0:
            for name in ("weight_ih_l0", "weight_hh_l0"):
                w = getattr(layer, name)
                out[name] = w + torch.randn_like(w) * self.noise_std
        if self.weight_p > 0.0:
            out["weight_hh_l0"] = F.dropout(out.get("weight_hh_l0", layer.weight_hh_l0), self.weight_p)
        return out

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = locked(x, self.input_p)
        last = len(self.layers) - 1
        raw = x
        for k, layer in enumerate(self.layers):
            weights = self._weights(layer)
            raw = (functional_call(layer, weights, (x,)) if weights else layer(x))[0]
            x = locked(raw, self.output_p if k == last else self.hidden_p)
        return x, raw


def ar_tar(dropped: Tensor, raw: Tensor, alpha: float = 2.0, beta: float = 1.0) -> Tensor:
    """AR on the dropped output and TAR on the raw one (Merity, McCann & Socher 2017)."""
    return alpha * dropped.pow(2).mean() + beta * (raw[1:] - raw[:-1]).pow(2).mean()


def twin_step(modules: list[TorchRegularizedLSTM], x: Tensor, weight: Tensor, with_ar_tar: bool):
    """One training iteration of a stack of twins, as bench_layers.make_step does for rnnreg's:
    loss = sum(out * weight), plus AR/TAR on the last module's outputs; then backward."""
    def step() -> None:
        x.grad = None
        for m in modules:
            m.zero_grad(set_to_none=True)
        out = x
        for m in modules:
            out, raw = m(out)
        loss = (out * weight).sum() + (ar_tar(out, raw) if with_ar_tar else 0.0)
        loss.backward()
    return step
