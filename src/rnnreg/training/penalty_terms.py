"""The regularization terms added to a task's loss, built in one place from ``[penalties]``.

Used by the training loop and by ``benchmarks/bench_lm.py``, so both add the same terms:

    AR    (Merity et al. 2017, eq. 5) on the last layer's DROPPED output,
    TAR   (Merity et al. 2017, eq. 6) on the last layer's RAW output,
    the norm-stabilizer (Krueger & Memisevic 2016, eq. 1) on each chosen layer's hidden or cell
          sequence, its first step compared with the state the sequence started from,
    L1 / L2 on the weights (elastic net).

Padded batches are penalised on their real steps only (``lengths``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import Tensor, nn

from .. import penalties
from ..config import PenaltyConfig


class PenaltyError(ValueError):
    """The penalties ask for something the model does not return (e.g. its cell states)."""


@dataclass(frozen=True)
class PenaltyTerms:
    """Each term as a scalar tensor (0 when off), to add to the loss and to log apart from it."""
    ar: Tensor
    tar: Tensor
    norm_stabilizer: Tensor
    weight: Tensor

    def record(self) -> dict[str, float]:
        return {"ar": self.ar.item(), "tar": self.tar.item(), "norm_stabilizer": self.norm_stabilizer.item(),
                "weight": self.weight.item()}


def penalty_terms(pen: PenaltyConfig, out, params: Iterable[nn.Parameter], *, like: Tensor,
                  lengths: Tensor | None = None, incoming: list | None = None) -> PenaltyTerms:
    """The terms for one batch. ``out``: the model output (``raw`` / ``dropped`` / ``cells``, one
    (T, B, H_l) tensor per layer); ``like``: a tensor of the loss's dtype and device (for the
    zeros); ``lengths`` (B,): real steps of a padded batch; ``incoming``: per layer, the state
    (``(h, c)`` or ``h``, each (1, B, H_l)) the sequences started from, or None (zeros)."""
    zero = like.new_zeros(())
    # Never in half precision: the penalties compute half-precision states (autocast's dtype under
    # train.precision = bf16 / fp16) in float32 themselves (rnnreg/penalties.py).
    norm = sum((penalties.norm_stabilizer(seq, pen.norm_stabilizer, h0, pen.norm_stabilizer_cost,
                                          pen.norm_stabilizer_target, lengths)
                for seq, h0 in _stabilized(pen, out, incoming)), zero)
    return PenaltyTerms(
        ar=penalties.ar(out.dropped[-1], pen.ar, lengths),
        tar=penalties.tar(out.raw[-1], pen.tar, lengths),
        norm_stabilizer=norm,
        weight=penalties.elastic_net(params, pen.l1, pen.l2) if pen.l1 or pen.l2 else zero)


def _stabilized(pen: PenaltyConfig, out, incoming: list | None) -> list[tuple[Tensor, Tensor | None]]:
    """The (T, B, H) sequences the norm-stabilizer penalises (every layer's, or the listed ones),
    each with its incoming state (B, H) so the first step of a window is compared with the last
    of the previous one."""
    if pen.norm_stabilizer == 0.0:
        return []
    cells = pen.norm_stabilizer_on == "cell"
    source = out.cells if cells else out.raw
    if source is None:
        raise PenaltyError("penalties.norm_stabilizer_on = 'cell' needs a model that returns its cells")
    pairs = []
    for layer in pen.norm_stabilizer_layers or range(len(source)):
        h0 = None
        if incoming is not None:
            state = incoming[layer]
            h0 = (state[1] if cells else state[0]) if isinstance(state, tuple) else state
            h0 = h0[0]                                        # (1, B, H) -> (B, H)
        pairs.append((source[layer], h0))
    return pairs

