"""A trained language model for plain PyTorch: a torch.nn state dict and a ``torch.export`` program.

``export_run`` writes into ``out`` (``RUN/export`` by default):

- ``state_dict.pt``: when the model in eval is exactly torch.nn layers, which holds for a language
  model whose cell is lstm, gru or rnn (tanh or relu, irnn included) without peepholes, TRec,
  zoneout or surprisal zoneout, and without MC dropout: ``nn.Embedding`` (``encoder``), one
  single-layer ``nn.LSTM`` / ``GRU`` / ``RNN`` per layer (``layers.0``, ``layers.1``, ...) and an
  ``nn.Linear`` decoder (``decoder``). rnnreg's layers register torch.nn's parameter names, and
  every other regularizer is the identity in eval (dropouts, weight drop, weight noise), so
  the keys are those of the run's own state dict. The torch.nn model's logits are compared with
  rnnreg's on an example window before anything is written.
- ``program.pt2``: ``torch.export.export`` of the model in eval, ``(tokens (T, B), state) ->
  (logits (T, B, V), state)`` with ``state`` a list of per-layer ``(h, c)`` (LSTM) or ``h``, each
  (1, B, H_l), zeros to start. torch's RNN decompositions fix the window length T at export
  (``steps``, 1 by default: one token per call, any length by looping); the batch size is free.
  A model that needs the stepwise C++ kernel (which does not trace) is exported through its
  plain-autograd twin (``implementation="reference"``); the program's logits are compared with
  rnnreg's too.
- ``export.json``: sizes, cell, nonlinearity, bias, vocabulary, the files written and, one line
  each, what was not written and why.

Whatever cannot be exported is skipped with its reason; the rest is still written. Nothing is
written (and ``out`` not created) when nothing can be.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..models import RNNLanguageModel, SurprisalZoneoutLM
from ..regularizers.monte_carlo import is_stochastic
from .checkpoint import CheckpointError, write_bytes_atomic
from .run_dir import RunDir
from .trained import TrainedRun, load_trained

_TORCH_RNN = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass(frozen=True)
class ExportResult:
    """written: the files, export.json last. skipped: one line per part not written, with why."""
    written: tuple[Path, ...]
    skipped: tuple[str, ...]


class TorchLM(nn.Module):
    """The torch.nn twin of an rnnreg language model in eval (what ``state_dict.pt`` loads into)."""

    def __init__(self, vocab_size: int, embedding_size: int, sizes: list[int], cell: str,
                 nonlinearity: str = "tanh", bias: bool = True) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab_size, embedding_size)
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        widths = [embedding_size, *sizes[:-1]]
        self.layers = nn.ModuleList(_TORCH_RNN[cell](w, h, bias=bias, **extra) for w, h in zip(widths, sizes))
        self.decoder = nn.Linear(sizes[-1], vocab_size)

    def forward(self, tokens: Tensor, state: list | None = None) -> tuple[Tensor, list]:
        x, new = self.encoder(tokens), []
        for index, layer in enumerate(self.layers):
            x, s = layer(x, None if state is None else state[index])
            new.append(s)
        return self.decoder(x), new


def export_run(run: RunDir, out: str | Path | None = None, *, which: str = "best", steps: int = 1) -> ExportResult:
    """Export ``run``'s best (or ``"last"``) weights into ``out`` (default ``RUN/export``)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    trained = load_trained(run, which=which)
    out = run.path / "export" if out is None else Path(out)
    files: dict[str, bytes] = {}
    skipped = []
    state_dict, reason = _torch_nn_state(trained)
    if state_dict is None:
        skipped.append(f"state_dict.pt not written: {reason}")
    else:
        files["state_dict.pt"] = _torch_bytes(state_dict)
    program, reason = _program(trained.model, steps)
    if program is None:
        skipped.append(f"program.pt2 not written: {reason}")
    else:
        files["program.pt2"] = program
    if not files:
        return ExportResult((), tuple(skipped))
    files["export.json"] = (json.dumps(_describe(trained, which, files, steps, skipped), indent=2) + "\n").encode()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create {out}: {err.strerror or err}") from None
    for name, data in files.items():
        write_bytes_atomic(out / name, data)
    return ExportResult(tuple(out / name for name in files), tuple(skipped))


def torch_nn_refusal(model: nn.Module) -> str | None:
    """Why ``model`` (in eval) is not plain torch.nn layers, in a few words; None when it is."""
    if isinstance(model, SurprisalZoneoutLM):
        return "surprisal-driven zoneout feeds each prediction back into the recurrence, which torch.nn layers do not"
    if type(model) is not RNNLanguageModel:
        return f"a {type(model).__name__} is not a language model (only those export as torch.nn layers)"
    if model.softmax != "full":
        return (f"its output layer is a {'mixture of softmaxes' if model.softmax == 'mos' else 'adaptive softmax'}"
                ", not the nn.Linear decoder of the torch.nn twin")
    for index, layer in enumerate(model.layers):
        where = f"layer {index}"
        if getattr(layer, "peepholes", False):
            return f"{where} has peephole connections, which torch.nn.LSTM has not"
        if getattr(layer, "nonlinearity", "tanh") not in ("tanh", "relu"):
            return f"{where} uses the {layer.nonlinearity!r} nonlinearity (torch.nn.RNN has tanh and relu)"
        if getattr(layer, "zoneout_h_p", 0.0) or getattr(layer, "zoneout_c_p", 0.0):
            return f"{where} has zoneout, which at eval mixes in the previous state (torch.nn layers do not)"
        if getattr(layer, "bidirectional", False):
            return f"{where} is bidirectional, which a language model cannot be"
    if any(is_stochastic(m) for m in model.modules() if hasattr(m, "mc_dropout")):
        return "MC dropout keeps the model random at eval"
    return None


def _torch_nn_state(trained: TrainedRun) -> tuple[dict[str, Tensor] | None, str]:
    model = trained.model
    refusal = torch_nn_refusal(model)
    if refusal:
        return None, refusal
    twin = _twin(model)
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    try:
        twin.load_state_dict(state)
    except RuntimeError as err:
        return None, f"its parameters are not torch.nn's ({str(err).splitlines()[0]})"
    tokens = torch.randint(0, model.vocab_size, (5, 2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap = (twin.eval()(tokens)[0] - model(tokens).logits).abs().max().item()
    if not gap <= 1e-4:
        return None, f"the torch.nn model's logits differ from rnnreg's by {gap:.3g}"
    return state, ""


def _twin(model: RNNLanguageModel) -> TorchLM:
    first = model.layers[0]
    cell = "rnn" if model.cell == "irnn" else model.cell
    return TorchLM(model.vocab_size, model.embedding_size, list(model.sizes), cell,
                   getattr(first, "nonlinearity", "tanh"), bool(getattr(first, "bias", True)))


def _program(model: nn.Module, steps: int) -> tuple[bytes | None, str]:
    if not isinstance(model, RNNLanguageModel):
        return None, f"a {type(model).__name__} is not a language model (only those are exported as programs)"
    tokens = torch.zeros(steps, 2, dtype=torch.long)
    state = model.init_state(2)
    batch = torch.export.Dim("batch", min=1)
    shapes = torch.utils._pytree.tree_map(lambda t: {t.dim() - 2: batch} if isinstance(t, Tensor) else None, state)
    failure = ""
    # The C++ stepwise kernel does not trace; its plain-autograd twin (implementation="reference")
    # computes the same recurrence in torch ops, so a model that needs it is exported through that.
    for candidate in (lambda: model, lambda: _on_reference_path(model)):
        try:
            program = torch.export.export(_Window(candidate()).eval(), (tokens, state),
                                          dynamic_shapes=({1: batch}, shapes))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
        except Exception as err:  # noqa: BLE001 - torch.export fails in many ways; its first line says which
            first = (str(err).strip().splitlines() or [""])[0]
            failure = failure or f"torch.export failed ({type(err).__name__}: {first[:200]})"
            continue
        with torch.no_grad():
            gap = (program.module()(tokens, state)[0] - model(tokens, state).logits).abs().max().item()
        if gap <= 1e-4:
            return buffer.getvalue(), ""
        failure = failure or f"the exported program's logits differ from rnnreg's by {gap:.3g}"
    return None, failure


def _on_reference_path(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if getattr(module, "implementation", None) in ("auto", "stepwise"):
            module.implementation = "reference"
    return twin


class _Window(nn.Module):
    # torch.export needs tensors (or lists and tuples of them) out, not LMOutput.
    def __init__(self, model: RNNLanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, state: list) -> tuple[Tensor, list]:
        out = self.model(tokens, state)
        return out.logits, out.state


def _describe(trained: TrainedRun, which: str, files: dict, steps: int, skipped: list[str]) -> dict:
    model, spec = trained.model, trained.spec
    lm = isinstance(model, RNNLanguageModel)
    first = model.layers[0] if lm else None
    return {"format": "rnnreg-export", "checkpoint": which, "kind": trained.config.task.kind,
            "cell": ("rnn" if model.cell == "irnn" else model.cell) if lm else None,
            "nonlinearity": getattr(first, "nonlinearity", "tanh") if lm else None,
            "bias": bool(getattr(first, "bias", True)) if lm else None,
            "vocab_size": spec.output_size, "embedding_size": model.embedding_size if lm else None,
            "sizes": list(model.sizes) if lm else None, "tie_weights": model.tie_weights if lm else None,
            "layout": "time-major: tokens (T, B), logits (T, B, V)",
            "program_steps": steps if "program.pt2" in files else None,
            "vocab": list(spec.vocab) if spec.vocab else None, "level": spec.level, "dataset": spec.dataset,
            "files": sorted(name for name in files), "skipped": skipped}


def _torch_bytes(state: dict[str, Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
