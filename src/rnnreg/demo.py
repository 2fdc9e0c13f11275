"""A one-minute demonstration of the layers: the adding problem with a regularized LSTM.

The adding problem (Hochreiter & Schmidhuber 1997): each step carries a random number and a
marker; the target is the sum of the two marked numbers. Always answering 1 scores an MSE of
about 0.1767, so a model below that has learned to carry information across the sequence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from . import penalties
from .layers import LSTM

log = logging.getLogger(__name__)
BASELINE_MSE = 0.1767  # the MSE of always predicting 1


def adding_batch(batch: int, steps: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """x (T, B, 2): value and marker channels; y (B,): the sum of the two marked values."""
    values = torch.rand(steps, batch, generator=gen)
    marks = torch.zeros(steps, batch)
    half = steps // 2
    first = torch.randint(0, half, (batch,), generator=gen)
    second = torch.randint(half, steps, (batch,), generator=gen)
    cols = torch.arange(batch)
    marks[first, cols] = 1.0
    marks[second, cols] = 1.0
    return torch.stack([values, marks], -1), (values * marks).sum(0)


class AddingModel(nn.Module):
    def __init__(self, hidden: int, **regularizers) -> None:
        super().__init__()
        self.rnn = LSTM(2, hidden, forget_bias=1.0, **regularizers)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor):
        out, _, states = self.rnn(x, return_states=True)
        return self.head(out[-1]).squeeze(-1), states


@dataclass(frozen=True)
class DemoResult:
    step: int
    mse: float
    valid_mse: float


def run_demo(steps: int = 1000, seq_len: int = 50, batch: int = 64, hidden: int = 64,
             seed: int = 0) -> Iterator[DemoResult]:
    """Train with zoneout, weight drop and the norm-stabilizer; yield progress every 100 steps."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AddingModel(hidden, zoneout_h_p=0.05, zoneout_c_p=0.3, weight_p=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    valid_x, valid_y = adding_batch(512, seq_len, torch.Generator().manual_seed(seed + 1))
    mse: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss
    for step in range(1, steps + 1):
        model.train()
        x, y = adding_batch(batch, seq_len, gen)
        pred, states = model(x)
        loss = mse(pred, y)
        # Krueger & Memisevic 2016: keep the hidden norms steady over time.
        total = loss + penalties.norm_stabilizer(states.raw[0], beta=1.0)
        opt.zero_grad()
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                valid = mse(model(valid_x)[0], valid_y).item()
            log.info("step %d train mse %.4f valid mse %.4f", step, loss.item(), valid)
            yield DemoResult(step, loss.item(), valid)
