"""The shape checks shared by the C++ kernel's wrappers (fast.py) and the step loop (steploop.py):
both hand raw pointers or flat views to kernels that trust the shapes, so both refuse bad ones
first, with the same messages (prefixed by who is refusing)."""

from __future__ import annotations

from torch import Tensor


def check_shapes(who: str, x: Tensor, states: tuple[Tensor, ...], w_ih: Tensor, w_hh: Tensor,
                 gates: int, vectors: tuple[Tensor | None, ...] = (), peep: Tensor | None = None) -> None:
    """x (T, B, I) with T > 0; w_ih (G, I) and w_hh (G, H) with G = gates * H; each state (B, H);
    each bias in ``vectors`` (G,); peepholes (3H,). ValueError naming ``who`` otherwise."""
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(f"{who}: x must be (T, B, I) with T > 0, got {tuple(x.shape)}")
    H = w_hh.shape[-1]
    G = gates * H
    if tuple(w_hh.shape) != (G, H) or tuple(w_ih.shape) != (G, x.shape[2]):
        raise ValueError(f"{who}: weights must be {(G, x.shape[2])} and {(G, H)}, "
                         f"got {tuple(w_ih.shape)} and {tuple(w_hh.shape)}")
    for s in states:
        if tuple(s.shape) != (x.shape[1], H):
            raise ValueError(f"{who}: initial states must be {(x.shape[1], H)}, got {tuple(s.shape)}")
    for v in vectors:
        if v is not None and tuple(v.shape) != (G,):
            raise ValueError(f"{who}: biases must be ({G},), got {tuple(v.shape)}")
    if peep is not None and tuple(peep.shape) != (3 * H,):
        raise ValueError(f"{who}: peep must be ({3 * H},), got {tuple(peep.shape)}")
