"""The best weights in files that need no rnnreg to read: ``best.safetensors`` and ``best.json``.

Written beside ``best.pt`` every time the loop saves it:

- ``best.safetensors``: the model's state dict (CPU, contiguous tensors, rnnreg's parameter names,
  which are torch.nn's: ``encoder.weight``, ``layers.0.weight_ih_l0``, ``decoder.bias``).
  safetensors refuses two names for one storage, so a tied weight (a language model's
  ``decoder.weight`` with ``tie_weights``, the very tensor ``encoder.weight`` is) is stored once,
  under its first name in the state dict; the file's metadata ``"tied"`` and ``best.json``'s map
  each dropped name to the kept one, ``{"decoder.weight": "encoder.weight"}``, and
  :func:`load_portable` puts it back. A tensor that only partly overlaps another is copied.
- ``best.json``: ``format``, ``weights`` (the file name) and its ``sha256``, ``config`` (the run's
  resolved config as a dict), ``spec`` (the task's model spec: sizes; a language model's
  vocabulary, level and dataset), ``step``, ``scores`` (non-finite numbers as ``"nan"``,
  ``"inf"``, ``"-inf"``, as in metrics.jsonl) and ``tied``.

Both are written like checkpoints (temp file, fsync, rename; a full disk is a one-line
:class:`~rnnreg.runs.checkpoint.CheckpointError` and leaves the previous file). The weights go
first and the JSON names their SHA-256, so a crash between the two leaves a pair that
:func:`load_portable` reports as mismatched instead of silently mixing two steps.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from .checkpoint import CheckpointError, write_bytes_atomic

FORMAT = "rnnreg-portable-weights"


def portable_paths(best: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(best.safetensors, best.json)`` beside the checkpoint ``best`` (``runs/x/best.pt``)."""
    best = Path(best)
    return best.with_suffix(".safetensors"), best.with_suffix(".json")


def save_portable(best: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write the portable pair beside ``best`` from best.pt's ``payload`` (its ``model`` state
    dict, ``config``, ``spec``, ``step`` and ``scores``)."""
    from safetensors.torch import save

    tensors, tied = untie(payload["model"])
    data = save(tensors, metadata={"format": "pt", "tied": json.dumps(tied)})
    weights, meta = portable_paths(best)
    write_bytes_atomic(weights, data)
    info = {"format": FORMAT, "weights": weights.name, "sha256": hashlib.sha256(data).hexdigest(),
            "config": payload.get("config"), "spec": payload.get("spec"), "step": payload.get("step"),
            "scores": payload.get("scores"), "tied": tied}
    text = json.dumps(_finite(info), indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(meta, text.encode("utf-8"))


def load_portable(best: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state dict (tied names restored) and ``best.json`` of the pair beside ``best``.

    Raises :class:`CheckpointError` when a file is missing or the pair does not match.
    """
    from safetensors.torch import load

    weights, meta = portable_paths(best)
    try:
        data, info = weights.read_bytes(), json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read the portable weights beside {best}: {err}") from None
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise CheckpointError(f"{weights} does not match {meta} (another step's, or damaged)")
    state = load(data)
    for alias, name in info.get("tied", {}).items():
        state[alias] = state[name]
    return state, info


def untie(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """CPU tensors safetensors accepts, and ``{dropped name: kept name}`` for tied weights."""
    kept: dict[tuple, str] = {}
    storages: set[int] = set()
    tensors, tied = {}, {}
    for name, tensor in state.items():
        tensor = tensor.detach()
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else 0
        view = (tensor.device, ptr, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if ptr and view in kept:
            tied[name] = kept[view]
            continue
        if ptr in storages:
            tensor = tensor.clone()  # overlaps another tensor without being it: stored apart
        if ptr:
            kept[view] = name
            storages.add(ptr)
        tensors[name] = tensor.cpu().contiguous()
    return tensors, tied


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as the strings metrics.jsonl uses (strict JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
